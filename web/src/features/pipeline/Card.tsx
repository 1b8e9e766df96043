import { Link } from "react-router";
import type { Deal } from "../../api/types";
import { useI18n } from "../../lib/i18n";
import { formatMoney } from "../../lib/time";
import { PlatformBadge, SlaBadge, useCustomerName } from "../../components/badges";
import { DRAG_TYPE, setDragged } from "./Column";
import type { Target } from "./useMoveDeal";

interface CardProps {
  deal: Deal;
  current: string;
  targets: { value: string; label: string }[];
  onMove: (deal: Deal, target: Target | { kind: "lost" }) => void;
}

export function Card({ deal, current, targets, onMove }: CardProps) {
  const { t, locale } = useI18n();
  const customerName = useCustomerName();
  return (
    <li
      className="deal-card"
      draggable
      onDragStart={(e) => {
        e.dataTransfer.setData(DRAG_TYPE, String(deal.id));
        e.dataTransfer.effectAllowed = "move";
        setDragged(deal);
      }}
      onDragEnd={() => setDragged(null)}
    >
      <Link to={`/deals/${deal.id}`} className="deal-card-title">
        {customerName(deal.contact)}
      </Link>{" "}
      <PlatformBadge platform={deal.platform} /> <SlaBadge sla={deal.sla} />
      <p className="deal-card-preview">{deal.last_message_text ?? ""}</p>
      <p className="deal-card-meta">
        <span>{deal.amount ? formatMoney(deal.amount, locale) : ""}</span>
        <span className="muted">{deal.assignee?.name ?? ""}</span>
      </p>
      {/* The keyboard and touch way to do what drag and drop does. */}
      <label className="move-to">
        <span className="sr-only">{t("pipeline.moveTo", { name: customerName(deal.contact) })}</span>
        <select
          value={current}
          onChange={(e) => {
            const v = e.target.value;
            if (v === "won") onMove(deal, { kind: "won" });
            else if (v === "lost") onMove(deal, { kind: "lost" });
            else onMove(deal, { kind: "stage", key: v.slice("stage:".length) });
          }}
        >
          {targets.map((target) => (
            <option key={target.value} value={target.value}>
              {target.value === current ? target.label : `→ ${target.label}`}
            </option>
          ))}
        </select>
      </label>
    </li>
  );
}
