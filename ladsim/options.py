"""The command-line options every ``ladsim run WORLD`` command shares, written once (their defaults are
``ladsim.settings.TrainSettings``'s). A command names them as its parameters' defaults, e.g. ``eta: float =
options.ETA``; the options that read differently per world (``--mode``, ``--group-size``, ``--steps``,
``--objective``, ``--kl``, ``--init-std``, ``--threads``, ``--out``) stay in the command."""

from __future__ import annotations

from typing import List, Optional

import typer

from ladsim.advantages import ESTIMATORS
from ladsim.divergences import DIVERGENCES
from ladsim.settings import OPTIMIZERS, TrainSettings

_D = TrainSettings()  # the defaults shown

SET: List[str] = typer.Option([], "--set", metavar="OBJ.PARAM=VALUE",
                              help="Set an objective's parameter (repeatable), e.g. --set flowrl.beta=5; "
                                   "`ladsim objectives` lists each one's.")
KL_BETA: float = typer.Option(_D.kl_beta, help="Coefficient beta of the KL penalty (verl's default 0.001).")
KL_BIAS_CORRECTION: bool = typer.Option(_D.kl_bias_correction, "--kl-bias-correction/--no-kl-bias-correction",
                                        help="Weigh the KL penalty by the token ratio pi/pi_old (TRL's "
                                             "use_bias_correction_kl): the current policy's KL under pi_old's "
                                             "samples.")
ENTROPY_TARGET: Optional[float] = typer.Option(None, metavar="H",
                                               help="Adaptive entropy control (TRL use_adaptive_entropy): apply "
                                                    "the bonus only while the mean token entropy is <= H, moving "
                                                    "its coefficient (from --entropy-coef) by --entropy-coef-delta "
                                                    "each step (TRL's target: 0.2).")
ENTROPY_COEF_DELTA: float = typer.Option(_D.entropy_coef_delta, help="Adaptive control's step of the coefficient.")
ENTROPY_COEF_MIN: float = typer.Option(_D.entropy_coef_min, help="Adaptive control's lowest coefficient.")
ENTROPY_COEF_MAX: float = typer.Option(_D.entropy_coef_max, help="Adaptive control's highest coefficient.")
TOP_ENTROPY_QUANTILE: float = typer.Option(_D.top_entropy_quantile, metavar="Q",
                                           help="Train only the tokens of the highest-entropy fraction Q of the "
                                                "sampled batch (TRL top_entropy_quantile; 1 = every token).")
ENTROPY_COEF: float = typer.Option(_D.entropy_coef, help="Entropy bonus coefficient (0 = none; every objective).")
ETA: float = typer.Option(_D.eta, help="Temperature eta > 0 of the target pi_old exp(A/eta).")
DIV: str = typer.Option(_D.div, help=f"f-divergence of LAD: {', '.join(DIVERGENCES)}.")
LR: float = typer.Option(_D.lr, help="Learning rate.")
OPTIMIZER: str = typer.Option(_D.optimizer, help=f"Optimizer: {', '.join(OPTIMIZERS)}.")
ADVANTAGE_SCALE: str = typer.Option(_D.advantage_scale,
                                    help="grpo's std flag (verl norm_adv_by_std_in_grpo): 'std' (GRPO) or 'none' "
                                         "(Dr.GRPO); also grpo-passk's.")
ADVANTAGE: Optional[str] = typer.Option(None, metavar="NAME",
                                        help=f"Advantage estimator: {', '.join(ESTIMATORS)} (`ladsim objectives` "
                                             "lists them). Default: grpo on sampled groups, R - E_pi_old[R] "
                                             "(dr-grpo's limit) where advantages are exact.")
REFRESH_EVERY: int = typer.Option(_D.refresh_every,
                                  help="Set pi_old to the policy every K steps (0 = frozen, 1 = on-policy).")
EPOCHS: int = typer.Option(_D.epochs, help="Optimizer steps per sampled batch (inner epochs).")
CLIP: Optional[float] = typer.Option(None, help="PPO clip epsilon of every objective that clips (default off).")
SEED: int = typer.Option(_D.seed, help="Random seed of the run.")
LOG_EVERY: int = typer.Option(_D.log_every, help="Log metrics every this many steps.")
DTYPE: str = typer.Option(_D.dtype, help="float64 (exact numbers) or float32 (faster on many seeds).")
DEVICE: str = typer.Option(_D.device, help="Where to train: cpu or cuda (cuda:K).")
OVERWRITE: bool = typer.Option(False, help="Replace an existing --out (only a directory ladsim wrote).")
