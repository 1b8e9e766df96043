/**
 * Meta's messaging window as the reply box shows it, mirroring crm's rule
 * (services/crm/src/crm/outbound/window.py): within 24 hours of the customer's last
 * message a reply is a RESPONSE; from 24 hours to 7 days only with the HUMAN_AGENT tag,
 * when the admin enabled it; after that Meta refuses. crm has the final word (409).
 * The deal answer's `last_inbound_at` (the conversation's last customer message, as crm
 * keeps it) is what the window counts from.
 */
export const RESPONSE_WINDOW_MS = 24 * 60 * 60 * 1000;
export const HUMAN_AGENT_WINDOW_MS = 7 * 24 * 60 * 60 * 1000;

export type WindowPhase = "open" | "human_agent" | "closed" | "no_message";

export interface WindowState {
  phase: WindowPhase;
  /** Milliseconds until the current phase ends (0 when closed or unknown). */
  remainingMs: number;
}

export function messagingWindow(lastCustomerMessageAt: string | null, now: number): WindowState {
  if (!lastCustomerMessageAt) return { phase: "no_message", remainingMs: 0 };
  const elapsed = now - new Date(lastCustomerMessageAt).getTime();
  if (elapsed < RESPONSE_WINDOW_MS) return { phase: "open", remainingMs: RESPONSE_WINDOW_MS - Math.max(0, elapsed) };
  if (elapsed < HUMAN_AGENT_WINDOW_MS) return { phase: "human_agent", remainingMs: HUMAN_AGENT_WINDOW_MS - elapsed };
  return { phase: "closed", remainingMs: 0 };
}
