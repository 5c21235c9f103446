"""The tiny training config the training, recipe and anchor tests share (runs in seconds)."""
from workbench.training import TrainConfig


def tiny_config(**kw) -> TrainConfig:
    """cyclic:3, H=6, 60 steps, small validation and test sets, no early stop; ``kw`` overrides."""
    base = dict(task="cyclic:3", d_hidden=6, steps=60, eval_every=20, checkpoint_every=20,
                val_sequences=32, long_val_sequences=32, long_val_length=60, eval_lengths=(10, 30),
                eval_sequences=64, early_stop=False, batch_size=16)
    base.update(kw)
    return TrainConfig(**base)
