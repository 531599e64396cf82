"""How the row kernels tile a row."""

from __future__ import annotations

from pallas_kernels.triton_rows import column_chunks, next_pow2


def test_column_chunks():
    """Rows split into unpadded power-of-two tiles where a factor of 64 or more allows, else one padded tile."""
    assert column_chunks(768) == (256, 3) and column_chunks(384) == (128, 3) and column_chunks(1024) == (1024, 1)
    assert column_chunks(100) == (128, 1) and column_chunks(312) == (512, 1) and column_chunks(8) == (8, 1)
    assert column_chunks(768, split=False) == (1024, 1)


def test_next_pow2():
    assert [next_pow2(n) for n in (1, 2, 3, 16, 17, 768)] == [1, 2, 4, 16, 32, 1024]
