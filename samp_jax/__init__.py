"""samp-jax: self-adaptive mixed-precision inference for BERT-family encoders on JAX.

    import samp_jax
    model = samp_jax.load("path/to/checkpoint", plan="fp16")
    out = model(input_ids, attention_mask=None, token_type_ids=None)
    preds = model.predict(["some text", ...])

`load` comes from `samp_jax.api`, the entry layer and (with the command line) the only part of
samp_jax that imports the Hugging Face converter `convert`; the rest is the library core.
"""

from samp_jax.api import load
from samp_jax.config import EncoderConfig
from samp_jax.decoding import Span
from samp_jax.heads import TaskSpec
from samp_jax.model import SampModel
from samp_jax.plan import Plan

__version__ = "0.1.0"

__all__ = ["EncoderConfig", "Plan", "SampModel", "Span", "TaskSpec", "load", "__version__"]
