"""Analysis of the IR: facts (shapes, counts), assertions, warnings; receptive fields."""

from archc.analysis.analyze import (
    PASSES as PASSES,
)
from archc.analysis.analyze import (
    Analysis as Analysis,
)
from archc.analysis.analyze import (
    LayerFacts as LayerFacts,
)
from archc.analysis.analyze import (
    Totals as Totals,
)
from archc.analysis.analyze import (
    analyze as analyze,
)
from archc.analysis.analyze import (
    build as build,
)
from archc.analysis.analyze import (
    check_assertion as check_assertion,
)
from archc.analysis.analyze import (
    check_assertions as check_assertions,
)
from archc.analysis.analyze import (
    fmt_int as fmt_int,
)
from archc.analysis.analyze import (
    infer_shapes as infer_shapes,
)
from archc.analysis.analyze import (
    si as si,
)
from archc.analysis.analyze import (
    warn_uneven as warn_uneven,
)
from archc.analysis.analyze import (
    written_unit as written_unit,
)
