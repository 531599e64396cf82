"""ModernBERT: its config settings (`settings`), rotary and window (`positions`), encoder (`encoder`), heads (`heads`).

This file imports nothing: `samp_jax.config` reads `settings` from the foundation layer, and
importing the package must not pull the Flax modules (a layer above it) in with it.
"""
