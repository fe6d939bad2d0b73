import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.data.names import name_indices


def test_name_indices_case_insensitive_in_given_order() -> None:
    assert name_indices([" Dog", "CAT", "dog"], ["cat", "dog", "bird"], "pets") == [1, 0, 1]


def test_name_indices_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(CrossforgetError, match=r"category 'fish' is not in pets; valid categories: cat, dog"):
        name_indices(["fish"], ["cat", "dog"], "pets", "category", "categories")
