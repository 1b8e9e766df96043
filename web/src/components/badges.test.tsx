import { describe, expect, it } from "vitest";
import { fireEvent, render } from "@testing-library/react";
import { Avatar } from "./badges";

function picture(container: HTMLElement): HTMLImageElement {
  const img = container.querySelector("img");
  if (!img) throw new Error("no picture shown");
  return img;
}

describe("Avatar", () => {
  it("shows the picture while it loads", () => {
    const { container } = render(<Avatar name="Lidia Named" url="https://cdn.example/p.jpg" />);
    expect(container.querySelector("img")?.getAttribute("src")).toBe("https://cdn.example/p.jpg");
  });

  it("falls back to the initials when the picture does not load", () => {
    const { container } = render(<Avatar name="Lidia Named" url="https://cdn.example/gone.jpg" />);
    fireEvent.error(picture(container));
    expect(container.querySelector("img")).toBeNull();
    expect(container.textContent).toBe("LI");
  });

  it("tries a new picture again", () => {
    const { container, rerender } = render(<Avatar name="Lidia Named" url="https://cdn.example/gone.jpg" />);
    fireEvent.error(picture(container));
    rerender(<Avatar name="Lidia Named" url="https://cdn.example/new.jpg" />);
    expect(container.querySelector("img")?.getAttribute("src")).toBe("https://cdn.example/new.jpg");
  });
});
