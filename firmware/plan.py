# The node's plan: what to air and when, decided on the node from the signed plan it holds.
# Pure functions (no I/O, no clock of their own) so they are tested directly; the node and
# firmware/runner.py use them. docs/protocol.md ("Plans") states the same rules in prose.

LOCK_MS = 10 * 60 * 1000  # items starting before now + LOCK_MS are not changed by an update
DEFAULT_QUIET = [1305, 300, 420]  # 21:45-05:00 at UTC+7, until a plan says otherwise
MIN_MS = 60000
DAY_MIN = 1440


def _overlaps(a, b):
    return a["s"] < b["e"] and b["s"] < a["e"]


def merge(old_items, new_items, now_ms, on_air=None):
    """Items of an updated plan under the lock window.

    Old items that have started or start before now + LOCK_MS (and the item on air, by id) are
    kept as they were. New items starting at or after now + LOCK_MS replace everything else; one
    that overlaps a kept item starts where the kept item ends (its offset moves with it). New
    items starting before now + LOCK_MS are taken only if they overlap no kept item. Items that
    have ended are dropped. Without an old plan every new item is taken."""
    if old_items is None:
        return list(new_items)
    lock = now_ms + LOCK_MS
    kept = []
    for it in old_items:
        if it["e"] > now_ms and (it["s"] < lock or it["id"] == on_air):
            kept.append(it)
    out = list(kept)
    ids = {}
    for it in kept:
        ids[it["id"]] = 1
    for it in new_items:
        if it["e"] <= now_ms or it["id"] in ids:
            continue
        clash = [k for k in kept if _overlaps(k, it)]
        if not clash:
            out.append(it)
        elif it["s"] >= lock:
            s = it["s"]
            for k in clash:
                if k["e"] > s:
                    s = k["e"]
            if s < it["e"]:
                trimmed = dict(it)
                trimmed["off"] = it.get("off", 0) + (s - it["s"])
                trimmed["s"] = s
                if not [k for k in kept if _overlaps(k, trimmed)]:
                    out.append(trimmed)
    out.sort(key=lambda i: i["s"])
    return out


# --- quiet hours ----------------------------------------------------------------------------

def local_minute(quiet, t_ms):
    """Minute of the local day (0..1439) at UTC time t_ms, with the plan's UTC offset."""
    return (t_ms // MIN_MS + quiet[2]) % DAY_MIN


def in_quiet(quiet, t_ms):
    start, end = quiet[0], quiet[1]
    if start == end:
        return False  # no quiet hours
    m = local_minute(quiet, t_ms)
    if start < end:
        return start <= m < end
    return m >= start or m < end  # the window crosses midnight


def _next_boundary(quiet, t_ms, minute):
    """The first UTC ms > t_ms that falls on local minute `minute` (a whole minute)."""
    base = (t_ms // MIN_MS) * MIN_MS
    m = local_minute(quiet, t_ms)
    ahead = (minute - m) % DAY_MIN
    if ahead == 0:
        ahead = DAY_MIN if base <= t_ms else 0
    return base + ahead * MIN_MS


def next_quiet_start(quiet, t_ms):
    """UTC ms of the next quiet-hours start after t_ms, or None without quiet hours."""
    if quiet[0] == quiet[1]:
        return None
    return _next_boundary(quiet, t_ms, quiet[0])


def quiet_end(quiet, t_ms):
    """UTC ms when the quiet hours that contain t_ms end (t_ms itself if not in quiet)."""
    if not in_quiet(quiet, t_ms):
        return t_ms
    return _next_boundary(quiet, t_ms, quiet[1])


def may_sound_in_quiet(item):
    return item.get("q", 0) == 1 or item.get("p", 0) >= 2


def window(item, quiet, start_ms):
    """When an item joined at start_ms may sound: (start, until, cut_by_quiet), or None when
    quiet hours forbid it from start_ms on (it is then missed)."""
    until = item["e"]
    if may_sound_in_quiet(item):
        return start_ms, until, False
    if in_quiet(quiet, start_ms):
        return None
    qs = next_quiet_start(quiet, start_ms)
    if qs is not None and qs < until:
        return start_ms, qs, True
    return start_ms, until, False


# --- time anchoring -------------------------------------------------------------------------

def position_ms(item, t_ms):
    """Where in the item's audio we are at t_ms (items are time-anchored, like radio)."""
    return t_ms - item["s"] + item.get("off", 0)


def current(items, now_ms, skip):
    """The item that should be on air at now_ms (s <= now < e, id not in skip), or None."""
    for it in items:
        if it["s"] <= now_ms < it["e"] and it["id"] not in skip:
            return it
        if it["s"] > now_ms:
            break
    return None


def upcoming(items, now_ms, skip):
    """The first item starting after now_ms whose id is not in skip, or None."""
    for it in items:
        if it["s"] > now_ms and it["id"] not in skip:
            return it
    return None


def media_needed(plan, now_ms):
    """[(url, sha, size)] the plan still needs: the fallback first, then items by start."""
    out = []
    seen = {}
    fb = plan.get("fallback")
    if fb:
        out.append((fb["url"], fb["sha"], fb["size"]))
        seen[fb["sha"]] = 1
    for it in plan["items"]:
        m = it.get("media")
        if m and it["e"] > now_ms and m["sha"] not in seen:
            out.append((m["url"], m["sha"], m["size"]))
            seen[m["sha"]] = 1
    return out
