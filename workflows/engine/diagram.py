"""The drawing of a BPMN file (its BPMN DI): where each element, lane and flow sits, as plain data.

``parse_layout(xml)`` reads the first ``BPMNDiagram``'s plane of a BPMN file into a ``Layout``: the flow
nodes as ``Shape``s (element id, kind, name, bounds), the participants and lanes as containers, and the
flows as ``Edge``s with their waypoints. Coordinates are BPMN DI units (pixels of the modeler), y down.
A file without DI gives an empty layout; XML that does not parse, or is not BPMN, raises ``ValueError``.
The parser resolves no entities, loads no DTD and never touches the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lxml import etree

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"

ACTIVITIES = frozenset({"subProcess", "callActivity", "transaction", "adHocSubProcess"})
CONTAINERS = frozenset({"participant", "lane"})


@dataclass(frozen=True)
class Bounds:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Shape:
    id: str  # the BPMN element's id (the shape's bpmnElement)
    kind: str  # the element's tag: "userTask", "startEvent", "exclusiveGateway", "lane", "participant", ...
    name: str
    x: float
    y: float
    w: float
    h: float
    label: Bounds | None = None  # where the modeler put the name (events and gateways), if it says
    marker_visible: bool = False  # exclusive gateways: whether the X is drawn
    event: str | None = None  # events: the first event definition ("timer", "message", "terminate", ...)
    interrupting: bool = True  # boundary events: cancelActivity

    @property
    def category(self) -> str:
        """``task``, ``event``, ``gateway``, ``participant``, ``lane`` or ``other`` (annotations, data, ...)."""
        if self.kind in CONTAINERS:
            return self.kind
        if self.kind == "task" or self.kind.endswith("Task") or self.kind in ACTIVITIES:
            return "task"
        if self.kind.endswith("Event"):
            return "event"
        if self.kind.endswith("Gateway"):
            return "gateway"
        return "other"


@dataclass(frozen=True)
class Edge:
    id: str  # the flow's id (the edge's bpmnElement)
    kind: str  # "sequenceFlow", "messageFlow", "association", ...
    name: str
    waypoints: tuple[tuple[float, float], ...]
    label: Bounds | None = None


@dataclass(frozen=True)
class Layout:
    shapes: tuple[Shape, ...] = ()  # flow nodes and other artifacts, in document order
    containers: tuple[Shape, ...] = ()  # participants and lanes
    edges: tuple[Edge, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.shapes or self.containers or self.edges)

    def shape(self, element_id: str) -> Shape | None:
        return next((s for s in self.shapes if s.id == element_id), None)

    def bounds(self) -> Bounds | None:
        """The box around everything drawn (shapes, containers, labels, waypoints); None when empty."""
        xs: list[float] = []
        ys: list[float] = []
        for s in (*self.containers, *self.shapes):
            xs += (s.x, s.x + s.w)
            ys += (s.y, s.y + s.h)
            if s.label:
                xs += (s.label.x, s.label.x + s.label.w)
                ys += (s.label.y, s.label.y + s.label.h)
        for e in self.edges:
            xs += [p[0] for p in e.waypoints]
            ys += [p[1] for p in e.waypoints]
            if e.label:
                xs += (e.label.x, e.label.x + e.label.w)
                ys += (e.label.y, e.label.y + e.label.h)
        if not xs:
            return None
        return Bounds(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, dtd_validation=False
    )


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _num(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _bounds(el: etree._Element | None) -> Bounds | None:
    if el is None:
        return None
    x, y, w, h = (_num(el.get(a)) for a in ("x", "y", "width", "height"))
    if x is None or y is None or w is None or h is None or w < 0 or h < 0:
        return None
    return Bounds(x, y, w, h)


def _root(xml: bytes) -> etree._Element:
    if not isinstance(xml, bytes | bytearray) or not xml.strip():
        raise ValueError("BPMN diagram: the BPMN file is empty")
    try:
        root = etree.fromstring(bytes(xml), _parser())
    except etree.XMLSyntaxError as err:
        raise ValueError(f"BPMN diagram: not well-formed XML: {err.msg} (line {err.lineno})") from err
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise ValueError("BPMN diagram: DTDs and entity declarations are not allowed in process files")
    if root.tag != _q(BPMN_NS, "definitions"):
        raise ValueError(f"BPMN diagram: not a BPMN file (the root element is {etree.QName(root).localname!r})")
    return root


def parse_layout(xml: bytes) -> Layout:
    """The layout of the first diagram in ``xml`` (a BPMN file's bytes); empty when the file has no DI."""
    root = _root(xml)
    elements: dict[str, etree._Element] = {}
    for el in root.iter(_q(BPMN_NS, "*")):
        element_id = el.get("id")
        if element_id:
            elements.setdefault(element_id, el)

    diagram = root.find(_q(BPMNDI_NS, "BPMNDiagram"))
    plane = diagram.find(_q(BPMNDI_NS, "BPMNPlane")) if diagram is not None else None
    if plane is None:
        return Layout()

    shapes: list[Shape] = []
    containers: list[Shape] = []
    edges: list[Edge] = []
    for di in plane:
        ref = di.get("bpmnElement") or ""
        el = elements.get(ref)
        kind = etree.QName(el).localname if el is not None else "unknown"
        name = (el.get("name") or "") if el is not None else ""
        label = _bounds(di.find(f"{_q(BPMNDI_NS, 'BPMNLabel')}/{_q(DC_NS, 'Bounds')}"))
        if di.tag == _q(BPMNDI_NS, "BPMNShape"):
            box = _bounds(di.find(_q(DC_NS, "Bounds")))
            if box is None:
                continue
            event = None
            if el is not None and kind.endswith("Event"):
                event = next(
                    (
                        etree.QName(child).localname.removesuffix("EventDefinition")
                        for child in el
                        if isinstance(child.tag, str) and child.tag.endswith("EventDefinition")
                    ),
                    None,
                )
            shape = Shape(
                id=ref,
                kind=kind,
                name=name,
                x=box.x,
                y=box.y,
                w=box.w,
                h=box.h,
                label=label,
                marker_visible=di.get("isMarkerVisible") == "true",
                event=event,
                interrupting=el is None or el.get("cancelActivity") != "false",
            )
            (containers if kind in CONTAINERS else shapes).append(shape)
        elif di.tag == _q(BPMNDI_NS, "BPMNEdge"):
            points = []
            for wp in di.iter(_q(DI_NS, "waypoint")):
                x, y = _num(wp.get("x")), _num(wp.get("y"))
                if x is not None and y is not None:
                    points.append((x, y))
            if len(points) >= 2:
                edges.append(Edge(id=ref, kind=kind, name=name, waypoints=tuple(points), label=label))
    return Layout(shapes=tuple(shapes), containers=tuple(containers), edges=tuple(edges))
