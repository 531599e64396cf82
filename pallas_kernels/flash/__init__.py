"""What the float and the 8-bit attention ops share: the reference's masked softmax, the packed layout's
checks, the tile choice, and the Pallas-Triton flash-attention program both kernels run."""
