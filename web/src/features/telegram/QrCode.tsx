import { useMemo } from "react";
import qrcode from "qrcode-generator";

/** A QR code drawn as SVG rectangles (no HTML strings), scannable at any size. */
export function QrCode({ value, label, size = 220 }: { value: string; label: string; size?: number }) {
  const cells = useMemo(() => {
    const qr = qrcode(0, "M");
    qr.addData(value);
    qr.make();
    const count = qr.getModuleCount();
    const dark: [number, number][] = [];
    for (let r = 0; r < count; r += 1) for (let c = 0; c < count; c += 1) if (qr.isDark(r, c)) dark.push([c, r]);
    return { count, dark };
  }, [value]);
  const quiet = 4;
  const span = cells.count + quiet * 2;
  return (
    <svg width={size} height={size} viewBox={`0 0 ${span} ${span}`} role="img" aria-label={label} shapeRendering="crispEdges" className="qr">
      <rect width={span} height={span} fill="#fff" />
      <path d={cells.dark.map(([x, y]) => `M${x + quiet} ${y + quiet}h1v1h-1z`).join("")} fill="#000" />
    </svg>
  );
}
