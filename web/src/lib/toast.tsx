import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { setRateLimitedHandler } from "../api/client";

interface Toast {
  id: number;
  text: string;
  tone: "error" | "info";
}

interface ToastValue {
  show: (text: string, tone?: Toast["tone"]) => void;
}

const ToastContext = createContext<ToastValue>({ show: () => undefined });
let nextId = 1;

/**
 * Short messages in a polite live region, e.g. "the move failed and was undone". A message
 * already on screen is shown once (e.g. a 429 the page reports too), its time starting again.
 * Every API call crm answers 429 shows crm's sentence and when to try again.
 */
export function ToastProvider({ children }: { children: ReactNode }) {
  const [toasts, setToasts] = useState<Toast[]>([]);
  const dismiss = useCallback((id: number) => setToasts((all) => all.filter((t) => t.id !== id)), []);
  const show = useCallback(
    (text: string, tone: Toast["tone"] = "info") => {
      const id = nextId++;
      setToasts((all) => [...all.filter((t) => t.text !== text).slice(-3), { id, text, tone }]);
      window.setTimeout(() => dismiss(id), 8000);
    },
    [dismiss],
  );
  useEffect(() => setRateLimitedHandler((error) => show(error.message, "error")), [show]);
  const value = useMemo(() => ({ show }), [show]);
  return (
    <ToastContext.Provider value={value}>
      {children}
      <div className="toasts" role="status" aria-live="polite">
        {toasts.map((t) => (
          <div key={t.id} className={`toast toast-${t.tone}`}>
            <span>{t.text}</span>
            <button type="button" className="link" onClick={() => dismiss(t.id)} aria-label="×">
              ×
            </button>
          </div>
        ))}
      </div>
    </ToastContext.Provider>
  );
}

export function useToast(): ToastValue {
  return useContext(ToastContext);
}
