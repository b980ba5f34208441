"""Every limit and default of a request, in one place: the parser bounds each number by these, the
request and the cell spec check them, and the docs quote them."""

from pathlib import Path

# What the code can honour: a batch and an image a model can be built for, a seed numpy and JAX take,
# sampling limits whose products and time-outs stay far from overflow.
MAX_BATCH, MAX_IMAGE, MAX_THREADS, MAX_SEED = 2**16, 2**14, 2**12, 2**32 - 1
MAX_SAMPLES = 10**7
MAX_TIME_S = 86_400.0  # of sampling per round
MAX_LABEL = 100
MAX_TIMEOUT_S = 1e6  # select/poll take milliseconds in a C int: about 24 days at most
MAX_ROUNDS = 1000
MAX_BUDGET_S = 1e7  # --rounds auto's budget per cell: about four months
MAX_GFLOPS = 1e12  # a zettaflop/s: no device comes close
MAX_COUNT = 10_000  # GPUs per cell or Slurm jobs at once: far above any cluster, far below overflow

# --rounds auto's budget per cell: no new round starts unless the last one's length still fits, so a
# resnet50 compare ends within 5 minutes, start-up and report included.
CELL_BUDGET_S = 290.0
RUN_ROUNDS = 3  # run's default; compare's is auto
MAX_TIME = 60.0  # the most sampling a round may take; planned rounds are usually far shorter
DEFAULT_RESULTS = Path("results")
SLURM_TIME = "1:00:00"
SLURM_MAX_PARALLEL = 256  # submitit's default array concurrency
