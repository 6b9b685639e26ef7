"""Config checks name the field(s) actually at fault: one key for a bound on one field, every key involved
for a relation between fields (`require_together`), each with its full dotted path."""
from __future__ import annotations

import pytest

from common.config import ConfigError, load_config
from phase0_diffusion.config import Phase0Config
from phase1_world_model.config import Phase1Config
from phase3_vla.config import Phase3Config


def _error(schema, config_name: str, overrides: list[str]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(schema, config_name, ["profile=smoke", *overrides])
    return err.value


def test_independent_bound_names_its_own_key():
    """monitor.every/rollouts/horizon are checked one by one: a bad rollouts count is not blamed on every."""
    e = _error(Phase1Config, "phase1/train", ["monitor.rollouts=0"])
    assert e.key == "monitor.rollouts" and not e.others
    assert "monitor.rollouts=0" in str(e), str(e)
    assert "monitor.every" not in str(e), str(e)


def test_edm_sigma_relation_names_both_keys():
    e = _error(Phase0Config, "phase0/train", ["diffusion.edm.sigma_min=100"])
    msg = str(e)
    assert "diffusion.edm.sigma_min=100" in msg and "diffusion.edm.sigma_max=" in msg, msg
    assert "sigma_min < sigma_max" in msg, msg


def test_edm_sigma_min_bound_names_one_key():
    e = _error(Phase0Config, "phase0/train", ["diffusion.edm.sigma_min=-1"])
    assert e.key == "diffusion.edm.sigma_min" and not e.others, str(e)


def test_phase3_action_steps_relation_names_both_keys():
    e = _error(Phase3Config, "phase3/train", ["policy.chunk_size=4", "policy.n_action_steps=10"])
    msg = str(e)
    assert "policy.n_action_steps=10" in msg and "policy.chunk_size=4" in msg, msg
    assert "do not fit together" in msg, msg
