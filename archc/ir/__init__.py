"""The IR: the elaborated graph, its shapes and layouts, and how it was written."""

from archc.ir.graph import (
    INPUT as INPUT,
)
from archc.ir.graph import (
    Assertion as Assertion,
)
from archc.ir.graph import (
    Frozen as Frozen,
)
from archc.ir.graph import (
    Graph as Graph,
)
from archc.ir.graph import (
    Node as Node,
)
from archc.ir.graph import (
    Scope as Scope,
)
from archc.ir.graph import (
    ScopeKind as ScopeKind,
)
from archc.ir.graph import (
    Shape as Shape,
)
from archc.ir.graph import (
    Span as Span,
)
from archc.ir.graph import (
    verify as verify,
)
from archc.ir.layout import (
    Layout as Layout,
)
from archc.ir.layout import (
    Physical as Physical,
)
from archc.ir.layout import (
    written_layout as written_layout,
)
from archc.ir.layout import (
    written_spatial_ranks as written_spatial_ranks,
)
