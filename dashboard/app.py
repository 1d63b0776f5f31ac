"""vad security dashboard: live alert feed, alert evidence and triage, camera overview.

Start it with `vad dashboard --store URL`; it reads the effective config from the
`VAD_DASHBOARD_CONFIG` environment variable (see dashboard/settings.py).

Everything an alert store holds is data: it reaches the page through dashboard/text.py as
plain text, never as Markdown or HTML. Markdown is only for the app's own words.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta, timezone

import cv2
import streamlit as st

from dashboard.charts import score_timeline
from dashboard.evidence import evidence_image, reference_pair
from dashboard.feed import (EPOCH_TIMESTAMP_MIN, STATUS_COLORS, FeedRow, MalformedAlert,
                            feed_row, format_age, format_timestamp)
from dashboard.settings import DashboardSettings
from dashboard.signin import operator_badge, signed_in_operator
from dashboard.text import field, notice, plain
from vad.config.outputs import OutputsConfig
from vad.config.sections import KafkaConfig, StoreConfig
from vad.errors import VadError
from vad.outputs import AlertOutputs, build_outputs
from vad.stores import AlertQuery, AlertStore, open_store
from vad.types import ALERT_STATUSES, CAMERA_STATES, CLOSE_REASONS, Alert, CameraStatus
from vad.urls import RedactingFilter, redacted_text

log = logging.getLogger("vad.dashboard")

ANY = "Any"
# Frames of score timeline shown on each side of an alert, at least.
TIMELINE_PAD = 60
FEED_COLUMNS = [1.0, 1.3, 2.3, 1.5, 2.1, 0.9]
TRIAGE_ACTIONS = (("acknowledged", "Acknowledge"), ("resolved", "Resolve"), ("new", "Reopen"))
CAMERA_STATE_COLORS = {"online": "green", "reconnecting": "orange", "stalled": "orange",
                       "offline": "red"}


@st.cache_resource(show_spinner=False)
def get_store(store_json: str) -> AlertStore:
    # One connection per server process, shared by every viewer: stores are thread-safe.
    return open_store(StoreConfig.model_validate_json(store_json))


@st.cache_resource(show_spinner=False)
def get_outputs(outputs_json: str, kafka_json: str) -> AlertOutputs:
    # One delivery thread per target per server process; triage events go where alerts go.
    return build_outputs(OutputsConfig.model_validate_json(outputs_json),
                         KafkaConfig.model_validate_json(kafka_json))


@st.cache_resource(show_spinner=False)
def redact_logs() -> None:
    """Once per server: what the dashboard logs goes out without URL passwords."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.addFilter(RedactingFilter())


def show_failure(url: str, exc: Exception) -> None:
    """A store or record failure as one readable line on the page; the traceback goes
    to the server log only."""
    log.warning("dashboard: %s", exc, exc_info=not isinstance(exc, VadError))
    lines = str(exc).strip().splitlines()
    reason = (lines[0] if lines else "no details").removeprefix(f"{url}: ")
    if not isinstance(exc, VadError):
        reason = f"{type(exc).__name__}: {reason}"
    notice(st, "error", "Cannot read the alert store:", redacted_text(f"{url} — {reason}"))


# --- sidebar filters ---------------------------------------------------------------------------

def time_range_filter(store: AlertStore,
                      camera_id: str | None) -> tuple[float | None, float | None]:
    """A slider over the event times present; an end left at its extreme stays open, so
    alerts arriving later still show."""
    alerts = store.query(AlertQuery(camera_id=camera_id, limit=100_000))
    times = sorted({float(a.start_time) for a in alerts if isinstance(a.start_time, (int, float))
                    and math.isfinite(a.start_time)})
    if len(times) < 2:
        return None, None
    lo, hi = times[0], times[-1]
    key = f"time-{hash((camera_id, lo, hi))}"  # new bounds, fresh slider
    if lo >= EPOCH_TIMESTAMP_MIN:
        bounds = _utc(math.floor(lo)), _utc(math.ceil(hi))
        low, high = st.sidebar.slider("Event time (UTC)", *bounds, value=bounds, key=key,
                                      step=timedelta(seconds=1), format="MM-DD HH:mm:ss")
        since, until = (t.replace(tzinfo=timezone.utc).timestamp() for t in (low, high))
    else:
        bounds = float(math.floor(lo)), float(math.ceil(hi))
        since, until = st.sidebar.slider("Event time (s into the video)", *bounds, value=bounds,
                                         step=0.5, format="%.1f s", key=key)
    return (None if since <= lo else since), (None if until >= hi else until)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc).replace(tzinfo=None)


def sidebar_query(store: AlertStore, settings: DashboardSettings) -> AlertQuery:
    st.sidebar.header("Filters")
    cameras = [str(camera) for camera in store.cameras()]
    camera = st.sidebar.selectbox("Camera", [ANY, *cameras], key="camera")
    status = st.sidebar.selectbox("Status", [ANY, *ALERT_STATUSES], key="status")
    min_score = st.sidebar.number_input("Minimum severity (peak score)", value=None, step=0.5,
                                        placeholder="any", key="min_severity")
    camera_id = None if camera == ANY else camera
    since, until = time_range_filter(store, camera_id)
    field(st.sidebar, "Store", settings.store_label)
    st.sidebar.caption(f"Threshold: {settings.threshold:g} · refresh every {settings.refresh:g} s")
    return AlertQuery(camera_id=camera_id, status=None if status == ANY else status,
                      min_score=min_score, since=since, until=until, limit=settings.feed_rows + 1)


# --- alert feed --------------------------------------------------------------------------------

def select_alert(alert_id: str) -> None:
    st.session_state.selected_alert = alert_id
    st.query_params["alert"] = alert_id


def render_feed(rows: list[FeedRow], selected: str | None, threshold: float) -> None:
    header = st.columns(FEED_COLUMNS)
    titles = ("Severity", "Camera", "Event time", "Duration", "Status", "")
    for column, title in zip(header, titles):
        column.caption(title)
    for row in rows:
        with st.container(border=True, key=f"row-{row.alert_id}"):
            cells = st.columns(FEED_COLUMNS, vertical_alignment="center")
            cells[0].badge(f"{row.severity:.2f}", color=row.severity_color(threshold))
            plain(cells[1], row.camera_id)
            cells[2].markdown(f"{row.event_time}  \n:gray[raised {row.raised}]")
            cells[3].markdown(f"{row.duration}  \n:gray[{row.frames} frames]")
            if row.ongoing:
                cells[3].badge("ongoing", icon=":material/radio_button_checked:", color="red")
            cells[4].badge(row.status, color=STATUS_COLORS[row.status])
            cells[5].button("", icon=":material/visibility:", help="Show this alert",
                            key=f"open-{row.alert_id}", on_click=select_alert, args=(row.alert_id,),
                            type="primary" if row.alert_id == selected else "secondary")


def valid_rows(alerts: list[Alert]) -> list[FeedRow]:
    rows, problems = [], []
    now = time.time()
    for alert in alerts:
        try:
            rows.append(feed_row(alert, now))
        except MalformedAlert as exc:
            problems.append(str(exc))
    if problems:
        notice(st, "warning", f"{len(problems)} malformed alert record(s) skipped:",
               "; ".join(problems[:3]))
    return rows


def alerts_view(settings: DashboardSettings, query: AlertQuery, operator: str) -> None:
    @st.fragment(run_every=settings.refresh)
    def live_alerts() -> None:
        try:
            store = get_store(settings.store.model_dump_json())
            alerts = store.query(query)
        except Exception as exc:  # noqa: BLE001 - any store failure becomes a message
            show_failure(settings.store_label, exc)
            return
        if not alerts:
            filtered = any(v is not None for v in (query.camera_id, query.status, query.min_score,
                                                   query.since, query.until))
            notice(st, "info", "No alert matches these filters." if filtered else
                   "No alerts yet: the store is empty. Alerts appear here as soon as the "
                   "pipeline raises them (`vad run VIDEO --store URL`).")
            return
        rows = valid_rows(alerts[:settings.feed_rows])
        chosen = st.session_state.get("selected_alert")
        selected = chosen or (rows[0].alert_id if rows else None)
        feed, detail = st.columns([11, 9], gap="large")
        with feed:
            more = (" (newest shown; narrow the filters for older ones)"
                    if len(alerts) > settings.feed_rows else "")
            st.subheader(f"Alert feed · {len(rows)} alert(s){more}")
            render_feed(rows, selected, settings.threshold)
        with detail:
            if selected is not None:
                alert_detail(store, selected, settings, operator)

    live_alerts()


# --- alert detail: one function per section ----------------------------------------------------

def alert_detail(store: AlertStore, alert_id: str, settings: DashboardSettings,
                 operator: str) -> None:
    try:
        alert = store.get(alert_id)
        if alert is None:
            notice(st, "info", "No alert with this id is in the store:", alert_id)
            return
        row = feed_row(alert)
    except MalformedAlert as exc:
        notice(st, "error", "This alert record is malformed and cannot be shown:", exc)
        return
    except Exception as exc:  # noqa: BLE001
        show_failure(settings.store_label, exc)
        return
    alert_header(alert, row, settings)
    show_evidence(alert)
    predicted_class(alert)
    show_clip(store, alert, settings)
    timeline(store, alert, row, settings)
    reasoning(alert)
    triage_status(alert)
    triage_form(alert, settings, operator)


def alert_header(alert: Alert, row: FeedRow, settings: DashboardSettings) -> None:
    st.subheader(f"Frames {row.start_frame}–{row.end_frame}")
    plain(st, f"Camera {row.camera_id} · alert {row.alert_id}")
    badges = st.container(horizontal=True)
    badges.badge(f"severity {row.severity:.2f}", color=row.severity_color(settings.threshold))
    badges.badge(row.status, color=STATUS_COLORS[row.status])
    badges.badge(row.event_time, color="gray")
    badges.badge(f"{row.duration} ({row.frames} frames)", color="gray")
    if row.ongoing:
        badges.badge("ongoing", icon=":material/radio_button_checked:", color="red")
    elif alert.close_reason in CLOSE_REASONS and alert.close_reason != "end":
        badges.badge(f"closed: {alert.close_reason}", color="gray")  # a fixed word, not data


def show_evidence(alert: Alert) -> None:
    if alert.reference_jpeg:
        show_reference_pair(alert)
        return
    try:
        image, caption = evidence_image(alert)
    except VadError as exc:
        notice(st, "warning", "No evidence image:", exc)
        return
    st.image(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), caption=caption, width="stretch")


def show_reference_pair(alert: Alert) -> None:
    """Patrol alerts: the reference and the query side by side."""
    try:
        pair = reference_pair(alert)
    except VadError as exc:
        st.warning(f"No evidence image: {exc}.", icon=":material/hide_image:")
        return
    for column, (image, caption) in zip(st.columns(2), pair):
        column.image(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), caption=caption, width="stretch")
def predicted_class(alert: Alert) -> None:
    """The anomaly class a scorer named for the event (e.g. vadclip's "Fighting")."""
    if not alert.label:
        return
    confidence = alert.label_confidence
    shown = (f"{alert.label} (confidence {confidence:.0%})"
             if isinstance(confidence, (int, float)) else str(alert.label))
    field(st, "Predicted class", shown)


@st.cache_data(show_spinner=False, max_entries=32)
def clip_bytes(store_json: str, alert_id: str, sha256: str) -> bytes | None:
    """A clip's video, read once per clip (not at every refresh of the feed)."""
    clip = get_store(store_json).clip(alert_id)
    return None if clip is None or clip.info.sha256 != sha256 else clip.data


def show_clip(store: AlertStore, alert: Alert, settings: DashboardSettings) -> None:
    """The event clip, pre-roll included, when the pipeline recorded one."""
    info = store.clip_info(alert.id)
    data = info and clip_bytes(settings.store.model_dump_json(), alert.id, info.sha256)
    if not data:
        st.caption("No event clip for this alert.")
        return
    st.video(data, format="video/mp4")
    st.caption(f"Event clip: frames {int(info.first_frame)}–{int(info.last_frame)} "
               f"({int(info.frames)} frames, {float(info.duration_s):.1f} s, "
               f"{int(info.size) / 1024:.0f} KB), pre-roll included")
    st.download_button("Download clip", data, file_name="alert-clip.mp4",
                       mime="video/mp4", key=f"clip-{alert.id}", icon=":material/download:")


def timeline(store: AlertStore, alert: Alert, row: FeedRow,
             settings: DashboardSettings) -> None:
    pad = max(TIMELINE_PAD, row.end_frame - row.start_frame)
    series = store.scores(alert.camera_id, row.start_frame - pad, row.end_frame + pad)
    if len(series.scores) == 0:
        notice(st, "info", "No score timeline was recorded around this alert.")
        return
    chart = score_timeline(series, settings.threshold, [(row.start_frame, row.end_frame)],
                           row.peak_frame, height=180)
    st.altair_chart(chart, width="stretch")
    st.caption(f"Score around the event (shaded); dashed line: threshold {settings.threshold:g}.")


def reasoning(alert: Alert) -> None:
    fields = (("Explanation", alert.explanation), ("Broken rule", alert.rule),
              ("Motion", alert.motion_description), ("Objects", alert.objects))
    present = [(name, text) for name, text in fields if text]
    if not present:
        st.caption("No explanation: the reasoning stage did not describe this alert.")
    for name, text in present:
        field(st, name, text)


def triage_status(alert: Alert) -> None:
    """Who set the status, when, and their note, as the store has them."""
    if not alert.status_by:
        return
    when = (format_age(alert.status_at) if isinstance(alert.status_at, (int, float))
            and alert.status_at > 0 else "at an unknown time")
    plain(st, f"{alert.status} by {alert.status_by}, {when}")


def apply_triage(settings: DashboardSettings, alert_id: str, status: str, operator: str) -> None:
    note = st.session_state.get(f"note-{alert_id}", "") or ""
    try:
        store = get_store(settings.store.model_dump_json())
        store.set_status(alert_id, status, note, by=operator)
    except Exception as exc:  # noqa: BLE001
        log.warning("dashboard: set_status failed: %s", exc)
        st.session_state.triage_message = (alert_id, "error", "Could not update this alert:",
                                           redacted_text(str(exc)))
        return
    st.session_state.triage_message = (alert_id, "success", f"Marked {status}.", None)
    try:
        outputs = get_outputs(settings.outputs.model_dump_json(), settings.kafka.model_dump_json())
        if outputs:
            outputs.status_changed(store.get(alert_id))
    except Exception as exc:  # noqa: BLE001 - the triage is stored; say what did not go out
        log.warning("dashboard: publishing the triage failed: %s", exc)
        st.session_state.triage_message = (alert_id, "warning",
                                           f"Marked {status}, but it could not be published:",
                                           redacted_text(str(exc)))


def triage_form(alert: Alert, settings: DashboardSettings, operator: str) -> None:
    with st.form(key=f"triage-{alert.id}"):
        st.text_area("Operator note", value=str(alert.note or ""), key=f"note-{alert.id}",
                     placeholder="What was it? Who was told?", height=80)
        buttons = st.container(horizontal=True)
        for status, label in TRIAGE_ACTIONS:
            with buttons:
                st.form_submit_button(label, key=f"{status}-{alert.id}", on_click=apply_triage,
                                      args=(settings, alert.id, status, operator),
                                      disabled=alert.status == status)
    # The outcome of this viewer's last action on this alert stays until they act again.
    message = st.session_state.get("triage_message")
    if message is not None and message[0] == alert.id:
        _, kind, text, detail = message
        notice(st, kind, text, detail)


# --- camera overview ---------------------------------------------------------------------------

def cameras_view(settings: DashboardSettings) -> None:
    @st.fragment(run_every=3 * settings.refresh)
    def overview() -> None:
        try:
            store = get_store(settings.store.model_dump_json())
            cameras = store.cameras()
            alerts = store.query(AlertQuery(limit=100_000))
            statuses = store.camera_statuses()
        except Exception as exc:  # noqa: BLE001
            show_failure(settings.store_label, exc)
            return
        if not cameras:
            notice(st, "info", "No camera has reported scores or alerts yet.")
            return
        for camera in cameras:
            try:
                camera_panel(store, camera, [a for a in alerts if a.camera_id == camera], settings,
                             statuses.get(camera))
            except Exception as exc:  # noqa: BLE001
                show_failure(settings.store_label, exc)

    overview()


def camera_panel(store: AlertStore, camera: str, alerts: list[Alert],
                 settings: DashboardSettings, status: CameraStatus | None = None) -> None:
    series = store.scores(camera)
    with st.container(border=True):
        st.caption("Camera")
        plain(st, camera)
        if status is not None:
            camera_status(status)
        metrics = st.columns(4)
        metrics[0].metric("Alerts", len(alerts))
        metrics[1].metric("Open (new)", sum(a.status == "new" for a in alerts))
        if len(series.indices):
            last_time = float(series.timestamps[-1])
            metrics[2].metric("Last frame seen", int(series.indices[-1]),
                              help=format_timestamp(last_time))
            live = last_time >= EPOCH_TIMESTAMP_MIN
            lag = f"{max(0.0, time.time() - last_time):.1f} s" if live else "n/a"
            metrics[3].metric("Worker lag", lag,
                              help="Wall-clock time since the last scored frame" if live else
                              "Known for live cameras only: this camera's timestamps count "
                              "seconds into a video file")
            spans = [(a.start_frame, a.end_frame) for a in alerts]
            st.altair_chart(score_timeline(series, settings.threshold, spans, height=160),
                            width="stretch")
        else:
            metrics[2].metric("Last frame seen", "none")
            st.caption("No score timeline recorded for this camera.")


def camera_status(status: CameraStatus) -> None:
    """A live camera's connection: its state since when, its last error and its gaps. The
    status comes from the store: every field is checked or shown as plain text."""
    if status.state in CAMERA_STATES:
        badges = st.container(horizontal=True)
        badges.badge(status.state, color=CAMERA_STATE_COLORS[status.state])
        if isinstance(status.since, (int, float)):
            badges.badge(f"since {format_timestamp(status.since)}", color="gray")
    try:
        gaps = f"{status.gap_count} gap(s), {status.total_gap_s:.1f} s in all"
        if status.gaps:
            gaps += " · latest: " + ", ".join(f"{gap.seconds:.1f} s" for gap in status.gaps[-3:])
    except (TypeError, ValueError, AttributeError):
        gaps = "gaps unreadable"
    plain(st, f"{status.source} · {status.reconnects} reconnection(s) · {gaps}")
    if status.last_error:
        plain(st, f"Last error: {status.last_error}")


# --- page --------------------------------------------------------------------------------------

def main() -> None:
    st.set_page_config(page_title="vad · security dashboard", page_icon=":material/videocam:",
                       layout="wide")
    redact_logs()
    st.title("Security alerts")
    try:
        settings = DashboardSettings.from_env()
        operator = signed_in_operator(settings)
    except VadError as exc:
        notice(st, "error", "Bad dashboard settings:", redacted_text(str(exc)))
        return
    if operator is None:
        return  # the sign-in form (or the refusal) is all there is
    if "selected_alert" not in st.session_state and "alert" in st.query_params:
        st.session_state.selected_alert = st.query_params["alert"]
    operator_badge(operator)
    try:
        query = sidebar_query(get_store(settings.store.model_dump_json()), settings)
    except Exception as exc:  # noqa: BLE001
        show_failure(settings.store_label, exc)
        return
    alerts_tab, cameras_tab = st.tabs(["Alerts", "Cameras"])
    with alerts_tab:
        alerts_view(settings, query, operator)
    with cameras_tab:
        cameras_view(settings)


main()
