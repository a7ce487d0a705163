"""The quickstart (``scripts/quickstart.sh``): a synthetic multitrack corpus (``synth``), the evaluation songs and
baselines (``evalset``, ``baselines``), the report (``report``) and its picture of extractions (``figures``),
checkpoint scores (``score``) and every text it embeds, with their precomputed table (``texts``).

A client of the library: it imports only its public API (``PUBLIC_API``, what tests/recipes checks).
"""

PUBLIC_API = (
    "mgeldm.api",  # loading models, the tasks, the untrained baseline, the AE round trip
    "mgeldm.audio",  # reading, resampling, writing audio and spectrograms
    "mgeldm.checkpoints",  # the checkpoint formats and names
    "mgeldm.config",  # the configs and their composition
    "mgeldm.data.corpora",  # the corpus readers
    "mgeldm.data.prompts",  # the prompt templates
    "mgeldm.evaluation",  # audio and latent scores
    "mgeldm.metrics",  # Log-Mel, SI-SDR, closest stem, FAD
    "mgeldm.models.conditioners",  # the text conditioners and the table of precomputed text embeddings
    "mgeldm.tasks.outputs",  # the layout of infer.py's output folders
    "mgeldm.files",  # atomic writes
    "mgeldm.progress",  # progress display
    "mgeldm.errors",  # UserError
    "mgeldm.cli.boundary",  # run_tool: one line and an exit code for every failure of a tool
)
