"""What the notifications say: customer, AI and Meta text escaped for Telegram HTML,
previews cut before escaping, reasons in plain words."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jggl_common.contracts import (
    ChannelNeedsReauthData,
    ContactRef,
    DealSnapshot,
    HotLeadData,
    MessageFailedData,
    MessageReceivedData,
)
from notifier.notification_texts import (
    OPEN_IN_CRM,
    PREVIEW_CHARS,
    failure_reason,
    preview,
    render_hot_lead,
    render_needs_reauth,
    render_new_lead,
    render_new_message,
    render_reply_failed,
)

APP_URL = "https://crm.example.com/"
NASTY = "<b>Tom & Jerry</b> 🐱"
CONTACT = ContactRef(id=1, platform="messenger", external_id="psid-1", display_name=NASTY)


def received(**overrides: Any) -> MessageReceivedData:
    values: dict[str, Any] = {
        "message_id": 1,
        "mid": "m.1",
        "deal_id": 42,
        "conversation_id": 7,
        "kind": "text",
        "text": NASTY,
        "sent_at": datetime.now(UTC),
        "is_first_message": False,
        "deal_stage": "<qualified>",
        "contact": CONTACT,
    }
    return MessageReceivedData(**(values | overrides))


def failed(**overrides: Any) -> MessageFailedData:
    values: dict[str, Any] = {
        "message_id": 2,
        "deal_id": 42,
        "conversation_id": 7,
        "kind": "text",
        "text": "Our price is <10$ & free",
        "reason": "window_closed",
        "error_message": "outside the window",
        "attempts": 0,
        "failed_at": datetime.now(UTC),
        "deal_stage": "new",
        "contact": CONTACT,
    }
    return MessageFailedData(**(values | overrides))


def test_a_new_message_escapes_everything_the_customer_wrote() -> None:
    text, markup = render_new_message(received(), APP_URL)
    assert text == (
        "💬 <b>New message</b>\n"
        "<b>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt; 🐱</b> · Messenger\n"
        "Stage: &lt;qualified&gt;\n\n"
        "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt; 🐱"
    )
    (row,) = markup.inline_keyboard
    assert [(button.text, button.url, button.callback_data) for button in row] == [
        (OPEN_IN_CRM, "https://crm.example.com/deals/42", None),
        ("Take", None, "take:42"),
        ("Reply", None, "reply:42"),
    ]


def test_the_ai_summary_is_shown_escaped_and_an_assigned_deal_has_no_take() -> None:
    text, markup = render_new_lead(received(assignee_id=5, is_first_message=True), APP_URL, "Wants <2> & now")
    assert text.startswith("🆕 <b>New lead</b>\n")
    assert text.endswith("&lt;b&gt;Tom &amp; Jerry&lt;/b&gt; 🐱\n\n🤖 <i>Wants &lt;2&gt; &amp; now</i>")
    assert [button.text for button in markup.inline_keyboard[0]] == [OPEN_IN_CRM, "Reply"]
    assert "🤖" not in render_new_message(received(), APP_URL, "  ")[0]


def test_the_preview_is_cut_before_escaping() -> None:
    long = "&" * (PREVIEW_CHARS + 50)
    shown = preview(long)
    assert shown == "&amp;" * (PREVIEW_CHARS - 1) + "…"


def test_attachments_are_shown_as_their_kind() -> None:
    assert preview("look", [{"type": "image", "url": "https://x"}]) == "look [image]"
    assert preview(None, [{"type": "image"}, {"type": "<video>"}], "image") == "[image] [&lt;video&gt;]"
    assert preview(None, [], "story_mention") == "[story_mention]"
    assert preview("   ", [], "sticker") == "[sticker]"


def test_a_hot_lead_shows_the_summary_and_next_action_escaped() -> None:
    deal = DealSnapshot(
        id=9,
        conversation_id=9,
        channel_id=1,
        platform="instagram",
        stage="new",
        status="open",
        created_at=datetime.now(UTC),
        contact=CONTACT,
    )
    lead = HotLeadData(
        deal=deal,
        summary="Wants 3 <XL> & fast",
        intent="purchase",
        next_action="Send the <price> list",
        provider="heuristic",
        analysis_version=1,
    )
    text, markup = render_hot_lead(lead, APP_URL)
    assert text.startswith("🔥 <b>Hot lead</b>\n")
    assert "<b>Summary:</b> Wants 3 &lt;XL&gt; &amp; fast" in text
    assert "<b>Intent:</b> purchase" in text
    assert "<b>Next:</b> Send the &lt;price&gt; list" in text
    assert markup.inline_keyboard[0][0].url == "https://crm.example.com/deals/9"
    without = render_hot_lead(lead.model_copy(update={"next_action": None}), APP_URL)[0]
    assert "Next:" not in without


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("window_closed", "24-hour window"),
        ("token_invalid", "reconnect the channel"),
        ("throttled", "rate limit"),
        ("unreachable", "did not answer"),
    ],
)
def test_failure_reasons_in_plain_words(reason: str, words: str) -> None:
    assert words in failure_reason(failed(reason=reason))


def test_a_meta_error_shows_its_code_and_text_escaped() -> None:
    failure = failed(reason="meta_error", error_code=551, error_message="This person isn't <available> & gone")
    assert failure_reason(failure) == "Meta refused it (code 551): This person isn&#x27;t &lt;available&gt; &amp; gone"


def test_a_failed_reply_shows_the_reply_and_why() -> None:
    text, markup = render_reply_failed(failed(), APP_URL)
    assert text.startswith("⚠️ <b>Reply not delivered</b>\n<b>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt; 🐱</b> · Messenger")
    assert "Reply: Our price is &lt;10$ &amp; free\n" in text
    assert text.endswith("<b>Why:</b> " + failure_reason(failed()))
    assert markup.inline_keyboard[0][0].url == "https://crm.example.com/deals/42"


def test_a_channel_to_reconnect_names_it_and_meta_s_error() -> None:
    text = render_needs_reauth(
        ChannelNeedsReauthData(
            channel_id=3,
            platform="instagram",
            external_id="17841400000",
            channel_name="Shop & <Co>",
            error_code=190,
            error_subcode=463,
            error_message="Session has expired <now>",
        )
    )
    assert "<b>Shop &amp; &lt;Co&gt;</b> · Instagram" in text
    assert "(code 190): Session has expired &lt;now&gt;" in text


def test_a_customer_whose_profile_is_not_read_yet_is_a_new_customer_not_a_number() -> None:
    nameless = ContactRef(id=2, platform="instagram", external_id="17841400000000001", display_name="17841400000000001")
    text, _ = render_new_lead(received(contact=nameless, is_first_message=True), APP_URL)
    assert "<b>New customer</b> · Instagram" in text
    assert "17841400000000001" not in text
    named = ContactRef(id=3, platform="instagram", external_id="17841400000000002", display_name="@olha")
    assert "<b>@olha</b>" in render_new_lead(received(contact=named, is_first_message=True), APP_URL)[0]
