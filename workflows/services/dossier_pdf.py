"""One contract's compliance dossier as a PDF (A4, Chinese and English): ``render_pdf(dossier) -> bytes``.

In this order: the facts, the audit chain check, the process diagram drawn from the BPMN DI with the path
taken, the decisions, the whole event log and the current data; every page footed with the business key
and "Page n/N". Labels follow ``dossier.language`` ("zh" or English). The text is Noto Sans CJK (Debian's
``fonts-noto-cjk``), embedded as a subset, so Chinese and English both show and can be searched and copied.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF

from ..engine import diagram
from ..engine.diagram import Bounds, Layout, Shape
from .accounts import ROLES
from .dossier import Dossier
from .errors import Unavailable

FONT_PACKAGE = "fonts-noto-cjk"
FONT_DIRS = (
    "/usr/share/fonts/opentype/noto",  # Debian, Ubuntu
    "/usr/share/fonts/noto-cjk",  # Arch
    "/usr/share/fonts/google-noto-cjk",  # Fedora
)
FONT_FILES = ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc")
FAMILY = "NotoSansCJK"

PAGE_W = 190.0  # A4 portrait less 10 mm margins each side
DATA_MAX = 300  # characters of an event's data shown in the log
VALUE_MAX = 500  # characters of one value in the decisions and the current data

INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
HEAD_FILL = (233, 236, 239)
ROW_FILL = (248, 249, 250)
RED = (200, 30, 30)
OK_GREEN = (25, 115, 50)
SHAPE_LINE = (70, 70, 70)
DONE_FILL = (212, 239, 216)
CURRENT_LINE = (245, 124, 0)
CURRENT_FILL = (255, 243, 224)
TAKEN = (40, 150, 60)
NOT_TAKEN = (175, 175, 175)
LANE_FILL = (248, 249, 251)
LANE_LINE = (190, 196, 202)
DURATION = (94, 53, 177)

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Compliance dossier / 合规档案",
        "process": "Process",
        "process_version": "Process key / version",
        "version_fmt": "{key}, version {version} (deployment {id})",
        "status": "Status",
        "stage": "Stage",
        "customer": "Customer",
        "amount": "Amount",
        "team": "Team",
        "started_by": "Started by",
        "started": "Started",
        "completed": "Completed",
        "generated": "Generated {at} UTC by {by}",
        "chain_ok": "Audit chain intact: {n} events",
        "chain_bad": "Audit chain broken: {message}",
        "diagram": "Process diagram",
        "diagram_unavailable": "Diagram unavailable: {reason}",
        "no_di": "the BPMN file has no diagram (BPMN DI)",
        "legend_done": "done",
        "legend_current": "open",
        "legend_taken": "path taken",
        "legend_not_taken": "not taken",
        "legend_duration": "2d 3h = time spent",
        "decisions": "Decisions",
        "no_decisions": "No decisions yet.",
        "time": "Time (UTC)",
        "step": "Step",
        "actor_role": "Actor (role)",
        "inputs": "Inputs",
        "events": "Event log",
        "seq": "#",
        "actor": "Actor",
        "role": "Role",
        "action": "Action",
        "data": "Data",
        "hash": "Hash",
        "no_events": "No events.",
        "current_data": "Current data",
        "key": "Key",
        "value": "Value",
        "no_data": "No data.",
        "page": "Page {n}/{total}",
    },
    "zh": {
        "title": "Compliance dossier / 合规档案",
        "process": "流程",
        "process_version": "流程标识 / 版本",
        "version_fmt": "{key}，第 {version} 版（部署 {id}）",
        "status": "状态",
        "stage": "阶段",
        "customer": "客户",
        "amount": "金额",
        "team": "团队",
        "started_by": "发起人",
        "started": "发起时间",
        "completed": "完成时间",
        "generated": "生成于 {at} UTC，生成人 {by}",
        "chain_ok": "审计链完整：共 {n} 条事件",
        "chain_bad": "审计链断裂：{message}",
        "diagram": "流程图",
        "diagram_unavailable": "流程图不可用：{reason}",
        "no_di": "BPMN 文件中没有图形信息（BPMN DI）",
        "legend_done": "已完成",
        "legend_current": "进行中",
        "legend_taken": "已走路径",
        "legend_not_taken": "未走路径",
        "legend_duration": "2d 3h = 停留时长",
        "decisions": "审批决策",
        "no_decisions": "暂无决策。",
        "time": "时间（UTC）",
        "step": "步骤",
        "actor_role": "处理人（角色）",
        "inputs": "提交内容",
        "events": "事件日志",
        "seq": "序号",
        "actor": "操作人",
        "role": "角色",
        "action": "动作",
        "data": "数据",
        "hash": "哈希",
        "no_events": "暂无事件。",
        "current_data": "当前数据",
        "key": "字段",
        "value": "值",
        "no_data": "暂无数据。",
        "page": "第 {n}/{total} 页",
    },
}
ROLE_NAMES: dict[str, tuple[str, str]] = {code: (en, zh) for code, en, zh in ROLES}

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


# --- fonts ---------------------------------------------------------------------------------------------------


@functools.cache
def _collection_index(path: str) -> int:
    """The face of the collection that is Simplified Chinese ("Noto Sans CJK SC"); 0 if none says so."""
    from fontTools.ttLib import TTCollection

    try:
        collection = TTCollection(path, lazy=True)
        for i, face in enumerate(collection.fonts):
            if (face["name"].getBestFamilyName() or "").endswith(" SC"):
                return i
    except Exception:  # an unreadable name table only costs the regional glyph variants
        pass
    return 0


def font_files() -> tuple[str, str | None, int]:
    """(regular .ttc, bold .ttc or None, face index); ``Unavailable`` naming the package when missing."""
    for folder in FONT_DIRS:
        regular, bold = (Path(folder) / name for name in FONT_FILES)
        if regular.is_file():
            return str(regular), (str(bold) if bold.is_file() else None), _collection_index(str(regular))
    raise Unavailable(
        f"The dossier PDF needs the Noto Sans CJK font ({FONT_FILES[0]}), found in none of {', '.join(FONT_DIRS)}: "
        f"install Debian's {FONT_PACKAGE} package (apt-get install {FONT_PACKAGE})"
    )


# --- formatting ----------------------------------------------------------------------------------------------


def _clean(text: Any) -> str:
    text = "" if text is None else str(text)
    return _CONTROL.sub(" ", text.replace("\r\n", "\n"))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utc(at: datetime | None) -> str:
    if at is None:
        return ""
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _money(amount: Decimal | None) -> str:
    if amount is None:
        return ""
    return f"{'-' if amount < 0 else ''}¥{abs(Decimal(amount)):,.2f}"


def _duration(spent: timedelta) -> str:
    minutes = int(spent.total_seconds() // 60)
    if minutes < 1:
        return "<1m"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _value(value: Any) -> str:
    """A value, compact: strings as they are, numbers and decimals plainly, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        return str(value)
    return _json(value)


def _pairs(values: dict[str, Any], limit: int = VALUE_MAX) -> str:
    text = "; ".join(f"{key}: {_cut(_clean(_value(v)), limit)}" for key, v in values.items())
    return _cut(text, 4 * limit)


# --- the document --------------------------------------------------------------------------------------------


class _DossierPDF(FPDF):
    def __init__(self, business_key: str, labels: dict[str, str]) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.business_key = business_key
        self.labels = labels
        self.set_margins(10, 12, 10)
        self.set_auto_page_break(auto=True, margin=16)
        regular, bold, index = font_files()
        self.add_font(FAMILY, "", regular, collection_font_number=index)
        self.add_font(FAMILY, "B", bold or regular, collection_font_number=index)
        self.set_font(FAMILY, "", 9)
        self.set_text_color(*INK)
        self._widths: dict[tuple[str, float], dict[str, float]] = {}

    def footer(self) -> None:
        self.set_y(-11)
        with self.local_context():
            self.set_font(FAMILY, "", 7)
            self.set_text_color(*MUTED)
            width = self.w - self.l_margin - self.r_margin
            self.set_x(self.l_margin)
            self.cell(width, 4, _clean(self.business_key), align="L")
            self.set_x(self.l_margin)
            self.cell(width, 4, self.labels["page"].format(n=self.page_no(), total="{nb}"), align="R")

    def heading(self, text: str, space_after: float = 2) -> None:
        if self.get_y() > self.h - self.b_margin - 30:
            self.add_page()
        self.ln(3)
        self.set_font(FAMILY, "B", 12)
        self.set_text_color(*INK)
        self.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
        self.set_font(FAMILY, "", 9)
        self.ln(space_after)

    def note(self, text: str, color: tuple[int, int, int] = MUTED, size: float = 8.5, bold: bool = False) -> None:
        self.set_font(FAMILY, "B" if bold else "", size)
        self.set_text_color(*color)
        self.multi_cell(0, size * 0.5, _clean(text), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(*INK)
        self.set_font(FAMILY, "", 9)

    def measure(self, text: str) -> float:
        """Width in mm of ``text`` in the current font, from a per-character cache (the tables measure a lot)."""
        widths = self._widths.setdefault((self.font_style, self.font_size_pt), {})
        total = 0.0
        for ch in text:
            width = widths.get(ch)
            if width is None:
                width = widths[ch] = self.get_string_width(ch)
            total += width
        return total

    def wrap(self, text: str, width: float) -> list[str]:
        """Lines of ``text`` at most ``width`` mm wide in the current font: broken at spaces and between
        Chinese characters, a word longer than a line cut where it overflows; each newline starts a line."""
        widths = self._widths.setdefault((self.font_style, self.font_size_pt), {})
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line, line_w = "", 0.0
            brk = space = 0  # where in ``line`` it may break: anywhere allowed, after a space (0: nowhere yet)
            for ch in paragraph:
                ch_w = widths.get(ch)
                if ch_w is None:
                    ch_w = widths[ch] = self.get_string_width(ch)
                cjk = _CJK.match(ch) is not None
                if line and line_w + ch_w > width:
                    if ch == " ":
                        lines.append(line.rstrip())
                        line, line_w, brk, space = "", 0.0, 0, 0
                        continue
                    # keep a short word together ("主管审核" after "Supervisor review / ")
                    cut = space if space and len(line) - space <= 6 else len(line) if cjk else brk
                    if cut == brk != space and self.measure(line[:cut]) < 0.4 * width:
                        cut = 0  # not a sliver of Chinese before a long word: cut the word instead
                    if 0 < cut < len(line):
                        lines.append(line[:cut].rstrip())
                        line = line[cut:].lstrip()
                        line_w = self.measure(line)
                    else:
                        lines.append(line.rstrip())
                        line, line_w = "", 0.0
                    brk = space = 0
                if ch == " " and not line:
                    continue
                line += ch
                line_w += ch_w
                if ch == " ":
                    brk = space = len(line)
                elif cjk:
                    brk = len(line)
            lines.append(line.rstrip())
        return lines

    def grid(
        self,
        col_widths: Sequence[float],
        headings: Sequence[str] | None,
        rows: Iterable[Sequence[str]],
        size: float = 7.5,
        bold_first: bool = False,
    ) -> None:
        """A table from the left margin: wrapped cells, alternate rows shaded, the headings repeated on every
        page it spans. A row taller than a page is cut (its cells end in "…")."""
        pad_x, pad_y = 1.0, 0.7
        line_h = size * 0.3528 * 1.3
        ascent = size * 0.3528 * 0.95
        left, total_w = self.l_margin, sum(col_widths)
        self.set_line_width(0.15)
        self.set_draw_color(*RULE)
        self.set_text_color(*INK)

        def layout(values: Sequence[str], bold: Sequence[bool]) -> list[list[str]]:
            cells = []
            for text, w, b in zip(values, col_widths, bold, strict=False):
                self.set_font(FAMILY, "B" if b else "", size)
                cells.append(self.wrap(_clean(text), w - 2 * pad_x))
            return cells

        def draw(cells: list[list[str]], bold: Sequence[bool], y: float, height: float, fill) -> None:
            if fill:
                self.set_fill_color(*fill)
                self.rect(left, y, total_w, height, style="F")
            x = left
            for lines, w, b in zip(cells, col_widths, bold, strict=False):
                self.set_font(FAMILY, "B" if b else "", size)
                for k, line in enumerate(lines):
                    if line:
                        self.text(x + pad_x, y + pad_y + k * line_h + ascent, line)
                x += w
            self.line(left, y + height, left + total_w, y + height)

        head_bold = [True] * len(col_widths)
        head = layout(headings, head_bold) if headings is not None else []
        head_h = max((len(c) for c in head), default=0) * line_h + 2 * pad_y if head else 0.0
        bottom = self.h - self.b_margin
        max_lines = max(1, int((bottom - self.t_margin - head_h - 2 * pad_y) // line_h))
        y = self.get_y()
        if head:
            if y + head_h + line_h + 2 * pad_y > bottom:
                self.add_page()
                y = self.get_y()
            draw(head, head_bold, y, head_h, HEAD_FILL)
            y += head_h
        row_bold = [bold_first] + [False] * (len(col_widths) - 1)
        for i, values in enumerate(rows):
            cells = layout(values, row_bold)
            for lines in cells:
                if len(lines) > max_lines:
                    del lines[max_lines:]
                    lines[-1] = lines[-1][:-1] + "…"
            height = max(len(c) for c in cells) * line_h + 2 * pad_y
            if y + height > bottom:
                self.add_page()
                y = self.get_y()
                if head:
                    draw(head, head_bold, y, head_h, HEAD_FILL)
                    y += head_h
            draw(cells, row_bold, y, height, ROW_FILL if i % 2 else None)
            y += height
        self.set_font(FAMILY, "", 9)
        self.set_xy(left, y + 1)


def _language(d: Dossier) -> str:
    return "zh" if (d.language or "").lower().startswith("zh") else "en"


# (kind, code) -> display name; kinds: "status", "stage", "action", "role". The web app passes its own
# translated labels; without them, roles get their names and other codes show as stored.
CodeLabels = Callable[[str, str], str]


def _stored_codes(lang: str) -> CodeLabels:
    def label(kind: str, code: str) -> str:
        names = ROLE_NAMES.get(code) if kind == "role" else None
        return (names[1] if lang == "zh" else names[0]) if names else code

    return label


def render_pdf(d: Dossier, code_labels: CodeLabels | None = None) -> bytes:
    """The dossier as PDF bytes. ``Unavailable`` when the Noto Sans CJK font is not installed."""
    lang = _language(d)
    label = code_labels or _stored_codes(lang)
    labels = LABELS[lang]
    pdf = _DossierPDF(d.business_key, labels)
    pdf.set_title(f"{labels['title']} {d.business_key}")
    pdf.set_author(d.generated_by)
    pdf.set_creator("Lvyue")
    pdf.set_lang("zh-CN" if lang == "zh" else "en")
    generated = d.generated_at if d.generated_at.tzinfo else d.generated_at.replace(tzinfo=UTC)
    pdf.set_creation_date(generated)
    pdf.add_page()

    _facts(pdf, d, lang, label)
    _diagram(pdf, d, lang)
    _decisions(pdf, d, lang, label)
    _events(pdf, d, lang, label)
    _current_data(pdf, d)
    return bytes(pdf.output())


def _facts(pdf: _DossierPDF, d: Dossier, lang: str, label: CodeLabels) -> None:
    labels = pdf.labels
    pdf.set_font(FAMILY, "B", 16)
    pdf.cell(0, 8, labels["title"], new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FAMILY, "B", 13)
    pdf.cell(0, 7, _clean(d.business_key), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    version = labels["version_fmt"].format(key=d.process_key, version=d.deployment_version, id=d.deployment_id)
    facts = [
        (labels["process"], d.process_name),
        (labels["process_version"], version),
        (labels["status"], label("status", d.status)),
        (labels["stage"], label("stage", d.stage) if d.stage else ""),
        (labels["customer"], d.customer_name or ""),
        (labels["amount"], _money(d.amount)),
        (labels["team"], d.team or ""),
        (labels["started_by"], d.started_by or ""),
        (labels["started"], f"{_utc(d.started_at)} UTC"),
        (labels["completed"], f"{_utc(d.completed_at)} UTC" if d.completed_at else "—"),
    ]
    pdf.grid((45, PAGE_W - 45), None, facts, size=9, bold_first=True)
    pdf.ln(2)
    pdf.note(labels["generated"].format(at=_utc(d.generated_at), by=d.generated_by))
    pdf.ln(1)
    if d.chain.ok:
        pdf.note(labels["chain_ok"].format(n=d.chain.events), color=OK_GREEN, size=9.5, bold=True)
    else:
        pdf.note(labels["chain_bad"].format(message=d.chain.message), color=RED, size=9.5, bold=True)


def _decisions(pdf: _DossierPDF, d: Dossier, lang: str, label: CodeLabels) -> None:
    labels = pdf.labels
    pdf.heading(labels["decisions"])
    if not d.decisions:
        pdf.note(labels["no_decisions"])
        return
    rows = []
    for decision in d.decisions:
        role = label("role", decision.role) if decision.role else ""
        rows.append(
            (
                _utc(decision.at),
                decision.step_name or decision.spec_id,
                f"{decision.actor} ({role})" if role else decision.actor,
                _pairs(decision.inputs)
                + (f"\n→ {_pairs({k: c.get('new') for k, c in decision.effects.items()})}" if decision.effects else ""),
            )
        )
    pdf.grid(
        (27, 40, 33, PAGE_W - 100),
        (labels["time"], labels["step"], labels["actor_role"], labels["inputs"]),
        rows,
        size=7.5,
    )


def _events(pdf: _DossierPDF, d: Dossier, lang: str, label: CodeLabels) -> None:
    labels = pdf.labels
    pdf.heading(labels["events"])
    if not d.events:
        pdf.note(labels["no_events"])
        return
    rows = [
        (
            str(e.seq),
            _utc(e.at),
            e.actor,
            label("role", e.role) if e.role else "",
            label("action", e.action),
            e.step_name or e.spec_id or "",
            _cut(_clean(_json(e.data)), DATA_MAX) if e.data else "",
            e.hash[:12],
        )
        for e in d.events
    ]
    headings = (
        labels["seq"],
        labels["time"],
        labels["actor"],
        labels["role"],
        labels["action"],
        labels["step"],
        labels["data"],
        labels["hash"],
    )
    pdf.grid((9, 25, 17, 17, 17, 30, 56, 19), headings, rows, size=6.5)


def _current_data(pdf: _DossierPDF, d: Dossier) -> None:
    labels = pdf.labels
    pdf.heading(labels["current_data"])
    if not d.data:
        pdf.note(labels["no_data"])
        return
    rows = [(str(key), _cut(_clean(_value(value)), VALUE_MAX)) for key, value in d.data.items()]
    pdf.grid((50, PAGE_W - 50), (labels["key"], labels["value"]), rows, size=7.5)


# --- the diagram ---------------------------------------------------------------------------------------------


def _diagram(pdf: _DossierPDF, d: Dossier, lang: str) -> None:
    labels = pdf.labels
    try:
        layout = diagram.parse_layout(d.bpmn_xml)
    except ValueError as err:
        pdf.heading(labels["diagram"])
        pdf.note(labels["diagram_unavailable"].format(reason=str(err).removeprefix("BPMN diagram: ")), color=RED)
        return
    box = layout.bounds()
    if layout.empty or box is None or box.w <= 0 or box.h <= 0:
        pdf.heading(labels["diagram"])
        pdf.note(labels["diagram_unavailable"].format(reason=labels["no_di"]), color=RED)
        return

    # Each band fits the page width; a wide process is cut into bands stacked down the page. It goes below
    # the facts when it is drawn there at 80 % or more of the size it would have on a page of its own.
    heading_h, legend_h = 12.0, 6.0
    room = pdf.h - pdf.b_margin - pdf.get_y() - heading_h - legend_h
    full = pdf.h - pdf.t_margin - pdf.b_margin - heading_h - legend_h
    bands, scale = _plan(layout, box, PAGE_W, room)
    full_bands, full_scale = _plan(layout, box, PAGE_W, full)
    if scale < 0.8 * full_scale:
        pdf.add_page()
        bands, scale = full_bands, full_scale
    pdf.heading(labels["diagram"], space_after=0)
    _legend(pdf, labels)
    y = pdf.get_y()
    for i, (start, end) in enumerate(bands):
        band = Bounds(start, box.y, end - start, box.h)
        x0 = pdf.l_margin + (PAGE_W - band.w * scale) / 2
        with pdf.rect_clip(x0 - 0.5, y - 0.5, band.w * scale + 1, band.h * scale + 1):
            _draw(pdf, layout, band, d, x0, y, scale)
            if i:
                _lane_headers(pdf, layout, band, d, x0, y, scale)
        y += band.h * scale + BAND_GAP
    pdf.set_xy(pdf.l_margin, y)


BAND_GAP = 4.0  # mm between the bands of a cut diagram
MAX_SCALE = 0.2  # mm per DI unit: a 100-unit task is at most 20 mm wide
READABLE_SCALE = 0.12  # mm per DI unit: a 100-unit task 12 mm wide, its name in 3.7 pt type; no need to cut
STRIP = 30.0  # DI units: the header strip of a lane or pool, where its name is


def _plan(layout: Layout, box: Bounds, width: float, height: float) -> tuple[list[tuple[float, float]], float]:
    """The bands (x ranges in DI units) to cut the diagram into and the scale (mm per unit) they are drawn at:
    one band when that is readable, else up to 4, one more only while it makes the drawing 5 % larger."""
    best: tuple[list[tuple[float, float]], float] | None = None
    for n in range(1, 5):
        bands = _bands(layout, box, n)
        widest = max(end - start for start, end in bands)
        scale = min(width / widest, (height - BAND_GAP * (n - 1)) / (n * box.h), MAX_SCALE)
        if best is not None and (best[1] >= READABLE_SCALE or scale <= best[1] * 1.05):
            break
        best = (bands, scale)
    assert best is not None
    return best


def _bands(layout: Layout, box: Bounds, n: int) -> list[tuple[float, float]]:
    """``n`` x ranges covering the diagram, cut where the fewest shapes are cut, near equal widths. Every band
    after the first starts a lane header strip earlier, where its lanes' names are drawn again."""
    if n == 1:
        return [(box.x, box.x + box.w)]
    overlap = STRIP if layout.containers else 0.0

    def cost(x: float) -> int:
        cut = 0
        for s in layout.shapes:
            cut += s.x - 5 < x < s.x + s.w + 5
            if s.label:
                cut += s.label.x < x < s.label.x + s.label.w
        return cut

    cuts = []
    for k in range(1, n):
        ideal = box.x + box.w * k / n
        reach = box.w / n * 0.12
        candidates = [ideal - reach + i * (2 * reach / 40) for i in range(41)]
        cuts.append(min(candidates, key=lambda x: (cost(x), abs(x - ideal))))
    edges = [box.x, *cuts, box.x + box.w]
    return [(edges[i] - (overlap if i else 0.0), edges[i + 1]) for i in range(n)]


def _lane_headers(pdf: _DossierPDF, layout: Layout, band: Bounds, d: Dossier, x0: float, y0: float, s: float) -> None:
    """The lanes' (or else the pools') names again, at the left edge of a band after the first."""
    lanes = [c for c in layout.containers if c.kind == "lane"] or list(layout.containers)
    names = d.names or {}
    with pdf.local_context():
        pdf.set_draw_color(*LANE_LINE)
        pdf.set_fill_color(*LANE_FILL)
        pdf.set_line_width(_clamp(1.5 * s, 0.1, 0.35))
        for lane in lanes:
            y = y0 + (lane.y - band.y) * s
            pdf.rect(x0, y, STRIP * s, lane.h * s, style="DF")
            _vertical_label(
                pdf, names.get(lane.id) or lane.name, x0 + STRIP * s / 2, y + lane.h * s / 2, lane.h * s, STRIP * s
            )


def _legend(pdf: _DossierPDF, labels: dict[str, str]) -> None:
    x, y = pdf.l_margin, pdf.get_y() + 1
    pdf.set_font(FAMILY, "", 7)
    pdf.set_text_color(*MUTED)
    pdf.set_line_width(0.25)

    def item(text: str, x: float) -> float:
        pdf.text(x, y + 2.6, text)
        return x + pdf.get_string_width(text) + 5

    pdf.set_draw_color(*SHAPE_LINE)
    pdf.set_fill_color(*DONE_FILL)
    pdf.rect(x, y, 5, 3.2, style="DF", round_corners=True, corner_radius=0.6)
    x = item(labels["legend_done"], x + 6.5)
    pdf.set_draw_color(*CURRENT_LINE)
    pdf.set_fill_color(*CURRENT_FILL)
    pdf.set_line_width(0.5)
    pdf.rect(x, y, 5, 3.2, style="DF", round_corners=True, corner_radius=0.6)
    x = item(labels["legend_current"], x + 6.5)
    pdf.set_line_width(0.45)
    pdf.set_draw_color(*TAKEN)
    pdf.line(x, y + 1.6, x + 6, y + 1.6)
    x = item(labels["legend_taken"], x + 7.5)
    pdf.set_line_width(0.25)
    pdf.set_draw_color(*NOT_TAKEN)
    pdf.line(x, y + 1.6, x + 6, y + 1.6)
    x = item(labels["legend_not_taken"], x + 7.5)
    pdf.set_text_color(*DURATION)
    item(labels["legend_duration"], x)
    pdf.set_text_color(*INK)
    pdf.set_draw_color(*INK)
    pdf.set_fill_color(255, 255, 255)
    pdf.set_y(y + 5)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _draw(pdf: _DossierPDF, layout: Layout, box: Bounds, d: Dossier, x0: float, y0: float, s: float) -> None:
    """Draws ``layout`` with its top-left corner at (x0, y0) mm, ``s`` mm per DI unit."""

    def px(x: float) -> float:
        return x0 + (x - box.x) * s

    def py(y: float) -> float:
        return y0 + (y - box.y) * s

    names = d.names or {}
    font_pt = _clamp(11 * s / 0.3528, 1.0, 7.0)  # the modeler's 11-12 px type, scaled
    line_w = _clamp(1.5 * s, 0.1, 0.35)
    with pdf.local_context():
        # lanes and pools
        for c in layout.containers:
            pdf.set_draw_color(*LANE_LINE)
            pdf.set_line_width(line_w)
            pdf.set_fill_color(*LANE_FILL)
            pdf.rect(px(c.x), py(c.y), c.w * s, c.h * s, style="DF" if c.kind == "lane" else "D")
            strip = 30 * s
            if c.kind == "participant" and any(lane.x > c.x for lane in layout.containers if lane.kind == "lane"):
                pdf.line(px(c.x) + strip, py(c.y), px(c.x) + strip, py(c.y + c.h))
            _vertical_label(pdf, names.get(c.id) or c.name, px(c.x) + strip / 2, py(c.y) + c.h * s / 2, c.h * s, strip)

        # flows: the ones not taken first, the path taken on top
        edges = sorted(layout.edges, key=lambda e: e.id in d.flows)
        for e in edges:
            taken = e.id in d.flows
            pdf.set_draw_color(*(TAKEN if taken else NOT_TAKEN))
            pdf.set_fill_color(*(TAKEN if taken else NOT_TAKEN))
            pdf.set_line_width(_clamp((2.5 if taken else 1.5) * s, 0.25 if taken else 0.1, 0.6))
            points = [(px(x), py(y)) for x, y in e.waypoints]
            if e.kind in ("association", "messageFlow") or e.kind.startswith("data"):
                pdf.set_dash_pattern(dash=0.6, gap=0.5)
            pdf.polyline(points)
            pdf.set_dash_pattern()
            if e.kind in ("sequenceFlow", "messageFlow"):
                _arrowhead(pdf, points, _clamp(10 * s, 0.8, 2.5))
            if e.label and e.name:
                pdf.set_text_color(*MUTED)
                lb = e.label
                _text_block(pdf, e.name, px(lb.x), py(lb.y), lb.w * s, lb.h * s, font_pt * 0.9, anchor="top")
                pdf.set_text_color(*INK)

        # flow nodes
        for shape in layout.shapes:
            _shape(pdf, shape, px(shape.x), py(shape.y), shape.w * s, shape.h * s, s, d)

        # names and time spent
        pdf.set_text_color(*INK)
        for shape in layout.shapes:
            name = names.get(shape.id) or shape.name
            x, y, w, h = px(shape.x), py(shape.y), shape.w * s, shape.h * s
            if name and shape.category in ("task", "other"):
                pad = 3 * s
                _text_block(pdf, name, x + pad, y + pad, w - 2 * pad, h - 2 * pad, font_pt)
            elif name:
                lb = shape.label or Bounds(shape.x + shape.w / 2 - 45, shape.y + shape.h + 5, 90, 27)
                above = lb.y + lb.h / 2 < shape.y + shape.h / 2  # the name sits above the shape: grow it upwards
                _text_block(
                    pdf, name, px(lb.x), py(lb.y), lb.w * s, lb.h * s, font_pt, anchor="bottom" if above else "top"
                )
            spent = d.durations.get(shape.id)
            if spent is not None:
                pdf.set_text_color(*DURATION)
                pdf.set_font(FAMILY, "", font_pt * 0.95)
                label = _duration(spent)
                pdf.text(x + w - pdf.get_string_width(label), y - 0.35 * font_pt * 0.3528, label)
                pdf.set_text_color(*INK)


def _shape(pdf: _DossierPDF, shape: Shape, x: float, y: float, w: float, h: float, s: float, d: Dossier) -> None:
    done, current = shape.id in d.done, shape.id in d.current
    fill = CURRENT_FILL if current else DONE_FILL if done else (255, 255, 255)
    pdf.set_fill_color(*fill)
    pdf.set_draw_color(*SHAPE_LINE)
    pdf.set_line_width(_clamp(2 * s, 0.12, 0.4))
    kind, category = shape.kind, shape.category
    cx, cy = x + w / 2, y + h / 2

    def outline_current(draw) -> None:
        if current:
            pdf.set_draw_color(*CURRENT_LINE)
            pdf.set_line_width(_clamp(4 * s, 0.45, 1.0))
            draw("D")
            pdf.set_draw_color(*SHAPE_LINE)
            pdf.set_line_width(_clamp(2 * s, 0.12, 0.4))

    if category == "task":
        radius = min(w, h) * 0.12

        def task(style: str) -> None:
            pdf.rect(x, y, w, h, style=style, round_corners=True, corner_radius=radius)

        if kind == "callActivity":
            pdf.set_line_width(_clamp(4 * s, 0.3, 0.8))
        task("DF")
        outline_current(task)
        _task_marker(pdf, kind, x + 3 * s, y + 3 * s, _clamp(14 * s, 0.6, 3.5))
    elif category == "event":
        r = min(w, h) / 2

        def circle(style: str, radius: float = r) -> None:
            pdf.ellipse(cx - radius, cy - radius, 2 * radius, 2 * radius, style=style)

        if kind == "endEvent":
            pdf.set_line_width(_clamp(4 * s, 0.35, 0.9))
        if kind == "boundaryEvent" and not shape.interrupting:
            pdf.set_dash_pattern(dash=0.5, gap=0.35)
        circle("DF")
        if kind.startswith("intermediate") or kind == "boundaryEvent":
            circle("D", r * 0.82)
        pdf.set_dash_pattern()
        outline_current(circle)
        _event_marker(pdf, shape.event, cx, cy, r * 0.55)
    elif category == "gateway":
        points = [(cx, y), (x + w, cy), (cx, y + h), (x, cy)]

        def diamond(style: str) -> None:
            pdf.polygon(points, style=style)

        diamond("DF")
        outline_current(diamond)
        _gateway_marker(pdf, kind, shape.marker_visible, cx, cy, w * 0.22, _clamp(3 * s, 0.15, 0.6))
    else:
        pdf.set_draw_color(*NOT_TAKEN)
        pdf.set_dash_pattern(dash=0.5, gap=0.4)
        pdf.rect(x, y, w, h, style="D")
        pdf.set_dash_pattern()


def _task_marker(pdf: _DossierPDF, kind: str, x: float, y: float, size: float) -> None:
    """A small sign in the task's top-left corner: a person, a gear, a script page or a rule table."""
    with pdf.local_context():
        pdf.set_draw_color(*SHAPE_LINE)
        pdf.set_line_width(max(0.05, size * 0.06))
        if kind == "userTask":
            head = size * 0.22
            pdf.ellipse(x + size / 2 - head, y, 2 * head, 2 * head, style="D")
            pdf.ellipse(x + size * 0.1, y + size * 0.5, size * 0.8, size * 0.9, style="D")
        elif kind == "serviceTask":
            pdf.ellipse(x, y, size * 0.8, size * 0.8, style="D")
            pdf.ellipse(x + size * 0.25, y + size * 0.25, size * 0.3, size * 0.3, style="D")
        elif kind == "scriptTask":
            pdf.rect(x, y, size * 0.7, size * 0.85, style="D")
            for i in (1, 2, 3):
                pdf.line(x + size * 0.12, y + size * 0.2 * i, x + size * 0.58, y + size * 0.2 * i)
        elif kind == "businessRuleTask":
            pdf.rect(x, y, size * 0.9, size * 0.7, style="D")
            pdf.line(x, y + size * 0.25, x + size * 0.9, y + size * 0.25)
            pdf.line(x + size * 0.3, y + size * 0.25, x + size * 0.3, y + size * 0.7)


def _event_marker(pdf: _DossierPDF, event: str | None, cx: float, cy: float, r: float) -> None:
    if event == "timer":
        with pdf.local_context():
            pdf.set_line_width(max(0.05, r * 0.12))
            pdf.set_fill_color(255, 255, 255)
            pdf.ellipse(cx - r, cy - r, 2 * r, 2 * r, style="DF")
            pdf.line(cx, cy, cx, cy - r * 0.75)
            pdf.line(cx, cy, cx + r * 0.55, cy)
    elif event == "terminate":
        with pdf.local_context():
            pdf.set_fill_color(*SHAPE_LINE)
            pdf.ellipse(cx - r, cy - r, 2 * r, 2 * r, style="F")


def _gateway_marker(
    pdf: _DossierPDF, kind: str, marker_visible: bool, cx: float, cy: float, a: float, width: float
) -> None:
    with pdf.local_context():
        pdf.set_draw_color(*SHAPE_LINE)
        pdf.set_line_width(width)
        if kind == "exclusiveGateway" and marker_visible or kind == "complexGateway":
            pdf.line(cx - a * 0.8, cy - a * 0.8, cx + a * 0.8, cy + a * 0.8)
            pdf.line(cx - a * 0.8, cy + a * 0.8, cx + a * 0.8, cy - a * 0.8)
        if kind in ("parallelGateway", "complexGateway"):
            pdf.line(cx - a, cy, cx + a, cy)
            pdf.line(cx, cy - a, cx, cy + a)
        if kind in ("inclusiveGateway", "eventBasedGateway"):
            pdf.ellipse(cx - a, cy - a, 2 * a, 2 * a, style="D")


def _arrowhead(pdf: _DossierPDF, points: list[tuple[float, float]], length: float) -> None:
    tip = points[-1]
    for base in reversed(points[:-1]):
        dx, dy = tip[0] - base[0], tip[1] - base[1]
        norm = math.hypot(dx, dy)
        if norm > 1e-6:
            break
    else:
        return
    ux, uy = dx / norm, dy / norm
    half = length * 0.42
    bx, by = tip[0] - ux * length, tip[1] - uy * length
    pdf.set_line_width(0.05)
    pdf.polygon([tip, (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)], style="DF")


def _text_block(
    pdf: _DossierPDF, text: str, x: float, y: float, w: float, h: float, size_pt: float, anchor: str = "middle"
) -> None:
    """Centred, wrapped text in the box (x, y, w, h) mm: made smaller until it fits in the box ("middle"), or
    else (an event's or a gateway's name) at most 1.6 times the box's height, from its top or its bottom.

    A BPMN name "English / 中文" puts each language on its own line.
    """
    text = _clean(text).replace(" / ", "\n").strip()
    if not text or w <= 0:
        return
    size = size_pt
    room = h if anchor == "middle" else h * 1.6
    while True:
        pdf.set_font(FAMILY, "", size)
        lines = pdf.wrap(text, w)
        line_h = size * 0.3528 * 1.18
        if len(lines) * line_h <= room or size <= size_pt * 0.5:
            break
        size *= 0.88
    block = len(lines) * line_h
    top_y = {"top": y, "bottom": y + h - block}.get(anchor, y + (h - block) / 2)
    for i, line in enumerate(lines):
        pdf.text(x + (w - pdf.measure(line)) / 2, top_y + i * line_h + size * 0.3528 * 0.92, line)


def _vertical_label(pdf: _DossierPDF, text: str, cx: float, cy: float, length: float, strip: float) -> None:
    """A lane's or pool's name, read bottom to top, centred on (cx, cy) in its header strip."""
    text = _clean(text).replace("\n", " ").strip()
    if not text:
        return
    size = _clamp(strip * 0.5 / 0.3528, 1.0, 9.0)
    pdf.set_font(FAMILY, "", size)
    while pdf.get_string_width(text) > length * 0.92 and size > 1.0:
        size *= 0.9
        pdf.set_font(FAMILY, "", size)
    with pdf.local_context():
        pdf.set_text_color(*MUTED)
        with pdf.rotation(90, cx, cy):
            pdf.text(cx - pdf.get_string_width(text) / 2, cy + size * 0.3528 * 0.35, text)
