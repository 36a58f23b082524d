"""Loss log (CSV) and loss plot (PNG) of a training run."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mvlift.atomic import atomic_write, atomic_write_text

# Columns every row has; loss components go between "step" and these.
TAIL_COLUMNS = ("lr", "grad_norm", "time_s")


class LossLog:
    """Append-only CSV of training rows with a PNG plot of the loss components.

    Columns: ``step``, the loss components (``loss`` first, then the others in first-seen order), then
    ``lr``, ``grad_norm`` and ``time_s`` (training wall time since the run started, summed over resumes).
    Values are written with full float precision (``repr``), so a row read back equals the logged value.

    Args:
        csv_path: the CSV file (its folder is created).
        png_path: the PNG plot file.
    """

    def __init__(self, csv_path: str | Path, png_path: str | Path) -> None:
        self.csv_path = Path(csv_path)
        self.png_path = Path(png_path)
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] | None = None
        self.rows: list[dict[str, float]] = []

    def load(self, up_to_step: int | None = None) -> None:
        """Read an existing CSV (resume), keeping only rows with ``step <= up_to_step``, and rewrite it.

        Rows after the checkpoint being resumed from are dropped, since the resumed run logs them again.
        """
        self.rows = []
        self.columns = None
        if not self.csv_path.is_file():
            return
        with self.csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            for row in reader:
                values = {k: float(v) for k, v in row.items() if v not in ("", None)}
                if up_to_step is None or values.get("step", math.inf) <= up_to_step:
                    self.rows.append(values)
        self.columns = columns or None
        self._rewrite()

    def append(self, row: dict[str, float]) -> None:
        """Append one row; must hold ``step``, ``loss`` and the tail columns; new keys fix the header."""
        missing = [k for k in ("step", "loss", *TAIL_COLUMNS) if k not in row]
        if missing:
            raise ValueError(f"LossLog.append: row lacks column(s) {missing}; got keys {sorted(row)}")
        if self.columns is None:
            comps = ["loss"] + [k for k in row if k not in ("step", "loss", *TAIL_COLUMNS)]
            self.columns = ["step", *comps, *TAIL_COLUMNS]
            self._rewrite()
        extra = sorted(set(row) - set(self.columns))
        if extra:
            raise ValueError(f"LossLog.append: unexpected column(s) {extra}; the log has {self.columns}")
        self.rows.append({k: float(v) for k, v in row.items()})
        with self.csv_path.open("a", newline="") as f:
            csv.writer(f).writerow([self._fmt(row.get(c)) for c in self.columns])

    @staticmethod
    def _fmt(v: float | None) -> str:
        if v is None:
            return ""
        fv = float(v)
        return str(int(fv)) if fv.is_integer() and abs(fv) < 2**53 else repr(fv)

    def _rewrite(self) -> None:
        if self.columns is None:
            return
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(self.columns)
        for row in self.rows:
            w.writerow([self._fmt(row.get(c)) for c in self.columns])
        atomic_write_text(self.csv_path, buf.getvalue())

    def plot(self) -> Path | None:
        """Write the PNG: every loss component against the step (log scale when all positive).

        Returns the PNG path, or None when there is nothing to plot yet.
        """
        if not self.rows or self.columns is None:
            return None
        comps = [c for c in self.columns if c not in ("step", *TAIL_COLUMNS)]
        steps = [r["step"] for r in self.rows]
        # A bare Agg figure: no pyplot, no global backend switch, nothing to close.
        fig = Figure(figsize=(7.0, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        all_positive = True
        for c in comps:
            ys = [r.get(c, math.nan) for r in self.rows]
            all_positive &= all(y > 0 for y in ys if not math.isnan(y))
            ax.plot(steps, ys, label=c, linewidth=1.2 if c == "loss" else 0.9)
        if all_positive:
            ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
        ax.set_title(f"training loss (last {self.rows[-1]['loss']:.4g} at step {int(steps[-1])})")
        fig.tight_layout()
        return atomic_write(self.png_path, lambda tmp: fig.savefig(tmp, format="png"))
