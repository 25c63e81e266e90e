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


def tiny_humans_args(config: str, cpu_piece: str | None = None, image_size: int = 32,
                     actions: tuple[str, ...] = ("walk", "jump"), batch_size: int = 8, steps: int = 3) -> list[str]:  # fmt: skip
    """An image method on the smallest SyntheticHumans: its config, configs/cpu_images.yaml, its own CPU piece, subjects
    1 / 2 / 3 for train / val / test, 20 frames per action, one room, ``image_size`` px, ``steps`` steps and one
    validation at the end; no progress bar, W&B off, one thread. Method-specific options go after it."""
    motion = "--data.init_args.motion.init_args"
    args = ["--config", config, "--config", "configs/cpu_images.yaml"] + (["--config", cpu_piece] if cpu_piece else [])
    return args + [
        "--model.init_args.image_size", str(image_size), "--data.init_args.image_size", str(image_size),
        "--model.init_args.pss_k", "[4]", "--model.init_args.artifacts_dir", "art",
        "--data.init_args.motion", "datamodules.SyntheticPoses", f"{motion}.train_subjects", "[1]",
        f"{motion}.val_subjects", "[2]", f"{motion}.test_subjects", "[3]", f"{motion}.actions", f"[{', '.join(actions)}]",
        f"{motion}.clips_per_action", "1", f"{motion}.frames_per_clip", "20",
        "--data.init_args.num_scenes", "1", "--data.init_args.video_frames", "10", "--data.init_args.eval_stride", "5",
        "--data.init_args.batch_size", str(batch_size), "--data.init_args.eval_batch_size", "32",
        "--data.init_args.num_workers", "0",
        "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(steps),
        "--trainer.num_sanity_val_steps", "0", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--run.wandb", "off", "--run.threads", "1",
    ]  # fmt: skip
