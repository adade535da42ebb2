"""`easel usage`: every community's images, credits and estimated spend as a fixed-width table (for the
operator's terminal, not a chat)."""

from __future__ import annotations

from collections.abc import Sequence

from core.records import CommunityUsage


def operator_table(rows: Sequence[CommunityUsage]) -> str:
    header = (
        f"{'platform':<9} {'community':<22} {'today img':>9} {'today cr':>8} {'month img':>9} "
        f"{'month cr':>8} {'month $':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.platform:<9} {row.community[:22]:<22} {row.today_images:>9} {row.today_credits:>8} "
            f"{row.month_images:>9} {row.month_credits:>8} {row.month_usd:>9.2f}"
        )
    if not rows:
        lines.append("(no rounds this month)")
    return "\n".join(lines)
