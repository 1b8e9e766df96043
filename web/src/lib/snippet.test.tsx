import { describe, expect, it } from "vitest";
import { render } from "@testing-library/react";
import { decodeEntities, parseSnippet } from "./snippet";
import { Snippet } from "../components/Snippet";

describe("search snippets", () => {
  it("keeps only <mark> as markup", () => {
    expect(parseSnippet("Hello <mark>Иван</mark>, price &lt;b&gt;10&lt;/b&gt;")).toEqual([
      { text: "Hello ", highlighted: false },
      { text: "Иван", highlighted: true },
      { text: ", price <b>10</b>", highlighted: false },
    ]);
  });

  it("renders a script or an attribute-carrying tag as visible text, never as HTML", () => {
    const hostile = '<mark>ok</mark> <script>alert(1)</script> <img src=x onerror=alert(2)> <mark onclick="x()">no</mark> &lt;script&gt;';
    const { container } = render(<Snippet text={hostile} />);
    expect(container.querySelectorAll("script, img, [onclick]")).toHaveLength(0);
    const marks = [...container.querySelectorAll("mark")].map((m) => m.textContent);
    expect(marks).toEqual(["ok"]);
    expect(container.textContent).toContain("<script>alert(1)</script>");
    expect(container.textContent).toContain('<mark onclick="x()">no');
  });

  it("decodes the entities crm's escaping produces", () => {
    expect(decodeEntities("&amp; &quot;q&quot; &#x27;s&#x27; &#39; &unknown;")).toBe("& \"q\" 's' ' &unknown;");
  });
});
