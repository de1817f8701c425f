"""Summary tables shared by the ``compare`` sub-commands (certificate and streamed paths)."""

from __future__ import annotations

from typing import Any

import numpy as np

from convexdict.cli import field_table

VERDICT_STYLE = {
    "certified_global": "green",
    "spurious_partial_minimum": "red",
    "partial_minimum": "yellow",
    "not_converged": "yellow",
    "undetermined": "magenta",
}


def comparison_table(cmp: Any, title: str = "comparison") -> Any:
    """A :class:`rich.table.Table` summarising a :class:`convexdict.compare.Comparison`."""
    style = VERDICT_STYLE.get(cmp.verdict, "white")
    st = cmp.stationarity
    rows = [
        ("lam_max, lam / lam_max", cmp.lam_line()),
        ("SAE width", str(cmp.width)),
        ("K* (width of the optimum)",
         str(cmp.width_needed) if cmp.width_needed >= 0 else "unknown"),
        ("loss = recon + penalty",
         f"{cmp.loss:.10g} = {cmp.reconstruction:.6g} + {cmp.penalty:.6g}"),
        ("L0, explained variance", f"{cmp.l0:.3g}, {cmp.explained_variance:.4f}"),
        ("dead latents", f"{len(cmp.dead_latents)} ({cmp.dead_fraction:.1%})"),
        ("lower bound (verified)", f"{cmp.lower_bound:.10g}"),
        ("gap, absolute", f"{cmp.gap:.3g}"),
        ("gap / loss (relative)", f"{cmp.relative_gap:.3g}"),
        ("own dual bound (the SAE's residual, priced)", f"{cmp.sae_dual_bound:.10g}"),
        ("loss a convex block step removes (dec, enc)",
         f"{cmp.improve_decoder:.3g}, {cmp.improve_encoder:.3g}"),
        ("at most (dec, enc: duality bounds)",
         f"{cmp.improve_decoder_bound:.3g}, {cmp.improve_encoder_bound:.3g}"),
        ("max code violation / atom residual",
         f"{st.max_code_violation:.3g} / {st.max_atom_residual:.3g}"),
        ("code condition fails on (max over latents)",
         f"{np.nanmax(st.code_violation_fraction, initial=0.0):.1%} of samples"
         if st.code_violation_fraction is not None else "n/a"),
    ]
    for match in (cmp.decoder_matching, cmp.activation_matching):
        if match is not None:
            rows.append((f"matching ({match.criterion})", f"mean quality {match.mean_quality:.4f}"))
    if 0 <= cmp.width < cmp.width_needed or (cmp.width_needed < 0
                                             and np.isfinite(cmp.optimum_loss)):
        from convexdict.fixed_width.width_incumbents import bracket_width

        rows.append((f"bracket of the width-{cmp.width} optimum",
                     f"[{cmp.lower_bound:.10g}, {cmp.optimum_loss:.10g}] (relative width "
                     f"{bracket_width(cmp.lower_bound, cmp.optimum_loss):.3%})"))
    if getattr(cmp, "better_sae", None) is not None:
        rows.append(("better explicit SAE (proof of spurious)",
                     f"width {cmp.better_sae.width}, loss {cmp.better_loss:.10g}"))
    if getattr(cmp, "incumbents", None) is not None:
        inc = cmp.incumbents
        rows.append((f"width-{cmp.width} incumbents", f"SAE polished {inc['polished_loss']:.10g}; "
                     f"best of {len(inc['restart_losses'])} restarts {inc['best_loss']:.10g} "
                     f"({inc['seconds']:.1f} s{', out of time' if inc['out_of_time'] else ''})"))
    if cmp.subsample is not None:
        rows.append(("samples", f"seeded subsample of {cmp.subsample['n_used']:,} of "
                     f"{cmp.subsample['n_total']:,}: every bound describes the subsample"))
    rows.append(("verdict", f"[{style}]{cmp.verdict}[/{style}]"))
    return field_table(title, rows)
