"""Hugging Face names of RoBERTa, XLM-RoBERTa, ELECTRA and DistilBERT checkpoints (`samp_jax.bertlike` has the rest).

RoBERTa, XLM-R and ELECTRA name their layers as BERT does; XLM-R's base prefix is `roberta.`, as
Hugging Face's `XLMRobertaPreTrainedModel.base_model_prefix` says. DistilBERT's layers are
`transformer.layer.{i}` with their own names. ELECTRA adds `embeddings_project` where
`embedding_size != hidden_size`.
"""

from __future__ import annotations

# The base-model prefix of the encoder's keys in a checkpoint with a head.
BASE_PREFIXES = {"roberta": "roberta.", "xlm-roberta": "roberta.", "electra": "electra.", "distilbert": "distilbert.",
                 "deberta-v2": "deberta."}

# Heads we do not serve, outside the base prefix; dropped (and reported) when a bare encoder is converted.
UNSERVED_HEAD_PREFIXES = {
    "electra": ("discriminator_predictions.", "generator_predictions.", "generator_lm_head."),
    "distilbert": ("vocab_transform.", "vocab_layer_norm.", "vocab_projector."),
}

EMBEDDINGS_PROJECT = "embeddings_project"

# Hugging Face's class-name prefix and the bare-encoder classes of each family (all have
# *ForSequenceClassification and *ForTokenClassification).
ARCHITECTURES = {
    "roberta": ("Roberta", ("Model", "ForMaskedLM")),
    "xlm-roberta": ("XLMRoberta", ("Model", "ForMaskedLM")),
    "electra": ("Electra", ("Model", "ForPreTraining", "ForMaskedLM")),
    "distilbert": ("DistilBert", ("Model", "ForMaskedLM")),
}


# DistilBERT's linears inside `transformer.layer.{i}`, by the BERT name of the same GEMM (amax import).
DISTILBERT_LINEARS = {"attention.q_lin": "attention.self.query", "attention.k_lin": "attention.self.key",
                      "attention.v_lin": "attention.self.value", "attention.out_lin": "attention.output.dense",
                      "ffn.lin1": "intermediate.dense", "ffn.lin2": "output.dense"}


def distilbert_layer_sources(i: int) -> dict[str, object]:
    """The checkpoint names (without `distilbert.`) of layer `i`'s linears and LayerNorms."""
    p = f"transformer.layer.{i}"
    a = f"{p}.attention"
    return dict(qkv=(f"{a}.q_lin", f"{a}.k_lin", f"{a}.v_lin"), out=f"{a}.out_lin", attn_ln=f"{p}.sa_layer_norm",
                ffn_in=f"{p}.ffn.lin1", ffn_out=f"{p}.ffn.lin2", ffn_ln=f"{p}.output_layer_norm")
