"""The task-family contract: what a family of tasks (NumVQA classification, AttrOD attributed
detection, ...) provides so that training, export, the bundle, evaluation and the CLI need no
family-specific code.

Two halves, so that compiling and evaluating never import torch:

- :class:`TaskFamily` (numpy only, this package): the attribute vocabulary and tasks, data as
  batches of named arrays, the named raw outputs of the supernet (written to the manifest), and the
  metric computed in numpy from those outputs (as ONNX Runtime returns them).
- :class:`TrainingFamily` (torch, ``nnfc.training.heads``): the head that turns the gated
  backbone's features into the named outputs, and the loss.

A family is registered by name in :data:`nnfc.families.FAMILIES`; the manifest's
``task_family.family`` names it and ``task_family.config`` rebuilds it (same data, same split).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

#: A task is a canonical tuple of attributes (the family fixes the order).
Task = tuple[str, ...]
#: A batch: "image" float32 [B,C,H,W], "task" int64 [B] (index into the tasks the batch was drawn
#: for) and the family's targets under names of its own (any shapes; numpy arrays or nested lists).
Batch = dict[str, Any]
#: Runs a model on images [B,C,H,W] and returns its raw outputs by name.
RunFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@runtime_checkable
class TaskFamily(Protocol):
    """Data, tasks, outputs and metric of one task family (numpy only)."""

    #: Registry name, written to the manifest ("numvqa", "attrod").
    name: ClassVar[str]
    #: Name of the metric :meth:`evaluate` returns ("accuracy", "map50").
    metric: ClassVar[str]
    #: The family's keys of a training config's ``[task]`` table with their defaults (besides
    #: ``family``); the config reader fills missing keys from it and rejects unknown ones.
    config_defaults: ClassVar[Mapping[str, Any]]
    #: Ordered attribute vocabulary (the assembler's multi-hot axis).
    attributes: tuple[str, ...]
    #: Tasks trained on, and held-out attribute combinations never trained on.
    seen_tasks: list[Task]
    unseen_tasks: list[Task]
    #: Deployed input shape (C, H, W) of the exported supernet.
    image_shape: tuple[int, int, int]
    #: Whether a compile may ask for any attribute subset (the assembler takes any multi-hot
    #: vector, e.g. NumVQA's ``odd``); False: every task must pass :meth:`parse_task` (e.g. a
    #: detection task needs a category). Optional; absent reads as True.
    partial_tasks: ClassVar[bool]

    def parse_task(self, attrs: Sequence[str]) -> Task:
        """Canonical task from attributes in any order; ``NnfcError`` with one clear line (naming
        the unknown attribute or what is missing) otherwise."""

    def encode(self, tasks: Sequence[Sequence[str]]) -> np.ndarray:
        """Multi-hot float32 [N, len(attributes)]."""

    def batch(self, tasks: Sequence[Task], n_per_task: int, split: str,
              rng: np.random.Generator, augment: bool = False) -> Batch:
        """``n_per_task`` samples per task from ``split`` ("train" | "test"), deterministic for
        ``rng``; ``augment`` turns on training-time augmentation (configured by the family's
        ``[task]`` keys). Rows are grouped by task: ``batch["task"]`` indexes ``tasks``; every
        other entry has the samples on axis 0 (the trainer slices batches with an index array:
        nested lists are indexed per sample)."""

    def output_spec(self) -> list[dict[str, Any]]:
        """The supernet's raw graph outputs in order: ``[{"name", "shape", ...}]`` (batch 1),
        plus whatever a consumer needs to read them (class names, stride, decode graph file)."""

    def evaluate(self, task: Task, run: RunFn, samples: int, seed: int = 2024) -> float:
        """The family's metric (``metric``) for ``task`` on ``samples`` test samples drawn
        deterministically from ``seed`` and the task, with ``run`` giving the raw outputs by
        the names of :meth:`output_spec` (ONNX Runtime on a pruned model, or torch in training).
        """

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TaskFamily":
        """Rebuild the family from ``manifest_info()["config"]`` (or a training config's
        ``[task]`` table)."""

    def manifest_info(self) -> dict[str, Any]:
        """The manifest's ``task_family`` section: ``{"family": name, "config": {...}, ...}``;
        ``config`` is what ``from_config`` (a classmethod every family has) takes to rebuild it."""


@runtime_checkable
class TrainingFamily(Protocol):
    """The torch half of a family: head and loss (lives in ``nnfc.training``)."""

    def build_head(self, feature_channels: Sequence[int], config: Mapping[str, Any]):
        """A ``torch.nn.Module`` ``head(features: list[Tensor], gates) -> dict[str, Tensor]``
        whose keys and order are :meth:`TaskFamily.output_spec`'s names. ``features`` and
        ``feature_channels`` come from the backbone (``GatedSupernet.features`` /
        ``feature_channels``: finest scale first, last = deepest); ``config`` is the training
        config's ``[head]`` table. Gated head convs use ``nnfc.training.gating.Gate`` like the
        backbone's (with ``GATED_PARAMS`` on their module); their gate layers join the model's
        ``gate_layers()`` after the backbone's."""

    def loss(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]):
        """Scalar task loss (torch) of the head's outputs against the batch's targets (the
        batch as :meth:`TaskFamily.batch` made it, numpy arrays turned into tensors on the
        model's device; other entries as they were)."""
