"""Metric names: one constant per score key, carrying its display name and which way is better.

A ``Metric`` is a ``str`` (its key), so it indexes the score dicts and writes to JSON as the plain key;
``display`` is what tables and figures print; ``better`` says whether a higher or a lower raw value is
the goal; ``reference`` names the column a forgetting score is judged against (|Δ| to Retrain or to
Original), empty when it is not judged by closeness. Tuples such as ``RETRIEVAL`` list what a task
computes, in the order results are written.
"""

from __future__ import annotations

from typing import Literal


class Metric(str):
    """A score key with its display name, direction and reference column."""

    display: str
    better: Literal["higher", "lower"]
    reference: str

    def __new__(
        cls, key: str, display: str, better: Literal["higher", "lower"], reference: str = ""
    ) -> Metric:
        metric = super().__new__(cls, key)
        metric.display, metric.better, metric.reference = display, better, reference
        return metric

    def __reduce__(self) -> tuple:
        return (Metric, (self.key, self.display, self.better, self.reference))

    @property
    def key(self) -> str:
        """The plain ``str`` key."""
        return str.__str__(self)


# Retrieval (hashing): one record per direction, fractions in [0, 1].
I2T, T2I = "I2T", "T2I"
DIRECTIONS = (I2T, T2I)
RETAIN = Metric("retain", "D_r mAP", "higher", reference="original")
FORGET_LABEL = Metric("forget_label", "D_f mAP (forget label)", "lower", reference="retrain")
FORGET_ANY = Metric("forget_any", "D_f mAP (any label)", "lower", reference="retrain")
RETRIEVAL = (RETAIN, FORGET_LABEL, FORGET_ANY)
# The D_f reading the tables, |Δ| and tuning use ("is the forgotten concept still retrievable?").
PRIMARY_FORGET = FORGET_LABEL
# The two sides of |Δ|: side name -> the metric judged on it (against ``metric.reference``).
DELTA_SIDES = (("forget", PRIMARY_FORGET), ("retain", RETAIN))

# Classification (Table 1): fractions in [0, 1].
FORGET_ACC = Metric("forget_acc", "D_f Acc", "lower", reference="retrain")
RETAIN_ACC = Metric("retain_acc", "D_r Acc", "higher", reference="original")
MIA = Metric("mia", "MIA", "lower", reference="retrain")
MIA_SHADOW = Metric("mia_shadow", "MIA (shadow)", "lower", reference="retrain")
CLASSIFICATION = (FORGET_ACC, RETAIN_ACC, MIA, MIA_SHADOW)
# Kept in the per-seed record, not in the table: the same accuracies on the training split.
FORGET_ACC_TRAIN = Metric("forget_acc_train", "D_f Acc (train)", "lower", reference="retrain")
RETAIN_ACC_TRAIN = Metric("retain_acc_train", "D_r Acc (train)", "higher", reference="original")
# Every key of a classification score record, in the order ``evaluate_classifier`` writes them.
CLASSIFICATION_RECORD = (FORGET_ACC, RETAIN_ACC, FORGET_ACC_TRAIN, RETAIN_ACC_TRAIN, MIA, MIA_SHADOW)


def display_names(metrics: tuple[Metric, ...]) -> dict[str, str]:
    """key -> display name, in order (the table and figure captions)."""
    return {m.key: m.display for m in metrics}
