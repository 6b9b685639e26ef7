"""One error path (common/errors.py): a UserError from any entry point is one line on stderr and exit status 2;
any other exception is a bug and propagates with its traceback; every phase's error classes are UserErrors."""
from __future__ import annotations

import pytest

from common.errors import DataError, UserError, command


def test_a_user_error_is_one_line_and_exit_2(capsys):
    @command
    def main(argv=None):
        raise DataError("episode_000003.npz: truncated; collect it again with repair=true")

    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert capsys.readouterr().err == "episode_000003.npz: truncated; collect it again with repair=true\n"


def test_a_bug_keeps_its_traceback():
    @command
    def main(argv=None):
        raise ValueError("a bug, not the user's fault")

    with pytest.raises(ValueError, match="a bug"):
        main([])


def test_every_phase_error_class_is_a_user_error():
    from common.checkpoint import CheckpointError
    from common.config import ConfigError
    from common.runs import ArtifactNotFoundError, ReleaseError, RunExistsError
    from phase0_diffusion.data import DataNotFoundError
    from phase1_world_model.recording import CollectError
    from phase1_world_model.storage import CorruptDatasetError, CorruptEpisodeError
    from phase2_diffusion_forcing.schedules import ScheduleError
    from phase3_vla.backbone import BackboneError
    from phase3_vla.libero_env import LiberoSetupError
    from phase3_vla.staging import CorruptStagedFileError
    for cls in (CheckpointError, ConfigError, ArtifactNotFoundError, ReleaseError, RunExistsError, DataNotFoundError,
                CollectError, CorruptDatasetError, CorruptEpisodeError, ScheduleError, BackboneError,
                LiberoSetupError, CorruptStagedFileError):
        assert issubclass(cls, UserError), cls
    # and they stay what they were, for callers that catch the built-in kind
    assert issubclass(ArtifactNotFoundError, FileNotFoundError) and issubclass(ConfigError, ValueError)


def test_the_trainers_batch_size_error_names_both_keys():
    """It used to be a bare ValueError (a traceback in phases 0-2, one line in phase 3)."""
    import torch

    from common.config import ConfigError
    from common.runs import TrainRunConfig
    from common.trainer import TrainConfig, Trainer, setup_run
    from common.logger import LogConfig
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        ctx = setup_run("phase0", TrainRunConfig(root=root, name="x", precision="fp32", threads=1), {})
        with pytest.raises(ConfigError, match="train.batch_size=6, train.micro_batch_size=4"):
            Trainer(ctx, torch.nn.Linear(2, 2), [0] * 8, TrainConfig(batch_size=6, micro_batch_size=4), LogConfig())
