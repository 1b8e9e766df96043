import { useEffect, useRef, useState } from "react";
import { useI18n } from "../../lib/i18n";

export function LostReasonDialog({ name, onConfirm, onCancel }: { name: string; onConfirm: (reason: string | null) => void; onCancel: () => void }) {
  const { t } = useI18n();
  const [reason, setReason] = useState("");
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  return (
    <div className="dialog-backdrop" onKeyDown={(e) => e.key === "Escape" && onCancel()}>
      <form
        className="dialog card"
        role="dialog"
        aria-modal="true"
        aria-labelledby="lost-title"
        onSubmit={(e) => {
          e.preventDefault();
          onConfirm(reason.trim() || null);
        }}
      >
        <h2 id="lost-title">{t("pipeline.lostTitle", { name })}</h2>
        <label>
          {t("deal.lostReason")}
          <input ref={input} value={reason} onChange={(e) => setReason(e.target.value)} />
        </label>
        <div className="row">
          <button type="submit" className="danger">
            {t("deal.markLost")}
          </button>
          <button type="button" className="secondary" onClick={onCancel}>
            {t("common.cancel")}
          </button>
        </div>
      </form>
    </div>
  );
}
