"""A worker's models, kept warm for its next trial of the same structure.

Ray Tune reuses a worker for many trials, and the trials of a sweep often differ only in their
learning rate or batch size. Building MobileNetV2 with its weights takes about 1.5 s and
compiling its training step about 1 s, so a worker keeps its last few models (split at the
frozen frontier, compiled, with their epoch loop) and resets one for the next trial instead.

Every model, fresh or reused, starts its trial through the same reset: the trainable
variables go back to their pretrained values, the head is initialised from the trial's seed,
random layers are reseeded, and the optimizer's state and learning rate are set. So a trial
trains the same weights whether or not its model was reused.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

import keras
import numpy as np

from . import feature_cache
from . import precision as precision_
from .model import TrialConfig, build_trial_model, compile_model, count_params
from .private_apis import seed_generators, tf_gradient_registry
from .training import EpochLoop

# A worker keeps at most this many models, and this many MB of their weights: enough for the
# few structures a search settles on, and a bound on its memory however many trials it runs.
KEEP_MODELS = 6
KEEP_MB = 400
# What `reset` and the epoch loop set for each trial: a warm model serves trials that differ only
# in these. Weight decay and label smoothing are compiled into the training step, so they are not.
PER_TRIAL = {"learning_rate": 0.0, "batch_size": 0, "schedule": "", "warmup_epochs": 0}


@dataclass(eq=False)  # identity: two warm models are never interchangeable
class WarmModel:
    model: keras.Model  # the whole model: what the checkpoint saves
    weights_used: object  # the weights it was built from: a file, "imagenet" or None
    split: feature_cache.Split | None  # None: trained on images
    loop: EpochLoop  # trains `split.trained`, or the whole model
    sizes: dict  # parameter counts, for the leaderboard
    _start: list  # the trained variables' values before any training
    _optimizer_start: list
    _gradients: set = field(default_factory=set)  # TF gradient registrations made by its training

    @property
    def trained(self) -> keras.Model:
        return self.split.trained if self.split else self.model

    def reset(self, seed: int, learning_rate: float) -> None:
        """Put the model in the state a fresh build has, for the trial with this seed."""
        # Pretrained backbones run in inference mode, so only trainable variables ever change.
        for variable, value in zip(self.trained.trainable_variables, self._start):
            variable.assign(value)
        seeds = np.random.default_rng(seed)
        base = feature_cache.backbone_layer(self.model)
        for layer in self.model.layers:
            if layer is not base:
                _initialise(layer, seeds)
        for layer in _all_layers(self.model):
            for generator in seed_generators(layer):
                generator.state.assign(np.array([_draw(seeds), 0], dtype=generator.state.dtype))
        optimizer = self.trained.optimizer
        for variable, value in zip(optimizer.variables, self._optimizer_start):
            variable.assign(value)
        optimizer.learning_rate = learning_rate


class ModelPool:
    """A worker's warm models: the last few built, by structure, and the gradients TensorFlow
    registered for each (dropped with the model, or the worker's memory grows)."""

    def __init__(self):
        self.models: OrderedDict[tuple, WarmModel] = OrderedDict()
        self.last: WarmModel | None = None  # the model of this worker's previous trial
        self.registered: set[str] = set()  # TF's gradient registrations when that trial started

    def prepare(self, config: TrialConfig, *, seed: int, task: str, n_classes: int, weights: str, weights_dir=None,
                target_stats=None, use_feature_cache: bool = True, precision: str = precision_.FLOAT32) -> WarmModel:
        """The trial's model, reset for it: reused from this worker's last trials when one has its structure."""
        if self.last is not None:
            self.last._gradients |= set(tf_gradient_registry()) - self.registered
        key = (replace(config, **PER_TRIAL), task, n_classes, weights, str(weights_dir),
               target_stats, use_feature_cache, precision)
        warm = self.models.pop(key, None)
        if warm is None:
            keras.backend.clear_session(free_memory=True)  # lets go of the models the pool has dropped
            keras.utils.set_random_seed(seed)
            warm = _build(config, task=task, n_classes=n_classes, weights=weights, weights_dir=weights_dir,
                          target_stats=target_stats, use_feature_cache=use_feature_cache, precision=precision)
        pooled = [*self.models.values(), warm]
        dropped = [self.last] if self.last is not None and all(self.last is not w for w in pooled) else []
        if warm.weights_used is not None:  # random backbones are not reset, so never reused
            self.models[key] = warm
            while len(self.models) > 1 and (len(self.models) > KEEP_MODELS
                                            or sum(w.sizes["size_mb"] for w in self.models.values()) > KEEP_MB):
                dropped.append(self.models.popitem(last=False)[1])
        for old in dropped:
            _forget_gradients(old)
        warm.reset(seed, config.learning_rate)
        self.last, self.registered = warm, set(tf_gradient_registry())
        return warm


POOL = ModelPool()  # this worker's: Ray reuses a worker process from trial to trial
prepare = POOL.prepare


def _forget_gradients(warm: WarmModel) -> None:
    registry = tf_gradient_registry()
    for name in warm._gradients:
        registry.pop(name, None)
    warm._gradients.clear()


def _build(config: TrialConfig, *, task, n_classes, weights, weights_dir, target_stats, use_feature_cache, precision):
    with precision_.building_in(precision):  # the split's models too: they take the policy when made
        model, weights_used = build_trial_model(config, task=task, n_classes=n_classes, weights=weights,
                                                weights_dir=weights_dir, target_stats=target_stats)
        split = feature_cache.split_model(model) if use_feature_cache else None
        trained = model
        if split is not None:
            trained = split.trained
            compile_model(trained, config, task=task, n_classes=n_classes)
    trained.optimizer.build(trained.trainable_variables)
    return WarmModel(
        model=model, weights_used=weights_used, split=split, loop=EpochLoop(trained), sizes=count_params(model),
        _start=[v.numpy() for v in trained.trainable_variables],
        _optimizer_start=[v.numpy() for v in trained.optimizer.variables],
    )


def _initialise(layer, seeds: np.random.Generator) -> None:
    """Draw a layer's weights anew with its own initialisers (Dense: kernel and bias), seeded.

    Seed-generator states are variables too; `reset` reseeds those.
    """
    for variable in layer.trainable_variables:
        initializer = getattr(layer, f"{variable.name}_initializer", None)
        if initializer is None:
            raise TypeError(f"cannot re-initialise {layer.name}/{variable.name}: no {variable.name}_initializer")
        config = initializer.get_config()
        if "seed" in config:
            initializer = type(initializer).from_config({**config, "seed": _draw(seeds)})
        variable.assign(initializer(variable.shape, variable.dtype))


def _all_layers(layer):
    yield layer
    for inner in getattr(layer, "layers", []):
        yield from _all_layers(inner)


def _draw(seeds: np.random.Generator) -> int:
    return int(seeds.integers(1, 2**31 - 1))
