"""The smallest SVMAC run on SyntheticPoses, as command-line arguments, for tests that go through the CLI."""

from __future__ import annotations


def tiny_args(actions: tuple[str, ...] = ("walk", "wave"), clips: int = 1, frames: int = 40, batch_size: int = 32,
              eval_batch_size: int | None = None, epochs: int = 2, wandb: str | None = "off",
              config: bool = True) -> list[str]:  # fmt: skip
    """Subjects 1-2 train, 3 validates, 4 tests; ``len(actions) * clips * frames`` poses per subject; width 32."""
    args = ["--config", "configs/svmac.yaml"] if config else []
    args += [
        "--model.init_args.width", "32", "--model.init_args.pss_k", "[4, 8]", "--model.init_args.artifacts_dir", "art",
        "--data.init_args.train_subjects", "[1, 2]", "--data.init_args.val_subjects", "[3]",
        "--data.init_args.test_subjects", "[4]", "--data.init_args.actions", f"[{', '.join(actions)}]",
        "--data.init_args.clips_per_action", str(clips), "--data.init_args.frames_per_clip", str(frames),
        "--data.init_args.views_per_pose", "1", "--data.init_args.batch_size", str(batch_size),
        "--trainer.max_epochs", str(epochs), "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    if eval_batch_size is not None:
        args += ["--data.init_args.eval_batch_size", str(eval_batch_size)]
    if wandb is not None:
        args += ["--run.wandb", wandb]
    return args
