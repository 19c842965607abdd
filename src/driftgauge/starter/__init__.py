"""``driftgauge init``: a starter config from a training file and/or a v2 server's model metadata.

Three steps, each testable alone: :func:`sample_data` reads the first rows of
a training file (CSV, JSON Lines, Parquet) and profiles each column;
:func:`fetch_metadata` reads ``GET {server}/v2/models/{model}`` (Open
Inference Protocol); :func:`plan_starter` turns either or both into fields
with a type and a note saying where the type came from; :func:`render_starter`
writes the YAML, with comments on what to review, and checks that it loads.

Type rules (also written into the config): text and booleans are categorical;
numbers are numeric, except whole numbers with at most
:data:`CATEGORICAL_MAX_DISTINCT` distinct values in the sample (0/1 flags,
small codes), which are categorical: their drift is then measured per value,
not over quantile bins that ties would make degenerate.  Model metadata types
tensors by datatype (FP*, INT*, UINT* numeric; BYTES, BOOL categorical); when
the training file holds the column too, its values decide.
"""

from driftgauge.starter.data import (
    CATEGORICAL_MAX_DISTINCT,
    SAMPLE_ROWS,
    ColumnProfile,
    DataSample,
    profile_column,
    sample_data,
)
from driftgauge.starter.errors import StarterError
from driftgauge.starter.metadata import (
    ModelMetadata,
    Tensor,
    fetch_metadata,
    metadata_url,
    parse_metadata,
)
from driftgauge.starter.plan import (
    Starter,
    StarterField,
    plan_starter,
    refuse_output,
    render_starter,
    write_starter,
)

__all__ = [
    "CATEGORICAL_MAX_DISTINCT",
    "SAMPLE_ROWS",
    "ColumnProfile",
    "DataSample",
    "ModelMetadata",
    "Starter",
    "StarterError",
    "StarterField",
    "Tensor",
    "fetch_metadata",
    "metadata_url",
    "parse_metadata",
    "plan_starter",
    "profile_column",
    "refuse_output",
    "render_starter",
    "sample_data",
    "write_starter",
]
