//! `hours`: branch on opening hours in the company's time zone.
//!
//! The schedule is a list of windows (`days` + `times`) in local time, plus
//! optional closed `holidays`. A window whose end is before its start
//! crosses midnight and belongs to the day it starts on, so
//! `fri 22:00-06:00` is open Saturday at 03:00.

use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};

use super::Action;
use crate::eval::Decision;
use crate::parse::Cx;
use crate::yaml::{Node, NodeKind};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Branch on opening hours.
#[derive(Debug, Clone)]
pub struct Hours {
    tz: TimeZone,
    schedule: Vec<Window>,
    holidays: Vec<Date>,
    open: Box<Action>,
    closed: Option<Box<Action>>,
}

/// One opening window: a set of weekdays and a local time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Index 0 is Monday.
    days: [bool; 7],
    /// Minutes after local midnight, inclusive.
    start: u16,
    /// Minutes after local midnight, exclusive; `1440` is `24:00`.
    end: u16,
}

impl Window {
    /// Whether local weekday `day` (0 = Monday) at `minute` falls in the window.
    fn contains(&self, day: usize, minute: u16) -> bool {
        if self.start < self.end {
            self.days[day] && (self.start..self.end).contains(&minute)
        } else {
            let yesterday = (day + 6) % 7;
            (self.days[day] && minute >= self.start) || (self.days[yesterday] && minute < self.end)
        }
    }
}

pub(crate) fn parse(cx: &mut Cx<'_>, node: &Node) -> Option<Hours> {
    let f = cx.map(
        node,
        "the `hours` action",
        &["time_zone", "schedule", "holidays", "open", "closed"],
        &["time_zone", "schedule", "open"],
    )?;
    let tz = f
        .get("time_zone")
        .and_then(|n| cx.value(n, "time zone", parse_time_zone));
    let mut schedule = Vec::new();
    let mut ok = true;
    if let Some(list) = f.get("schedule").and_then(|n| cx.list(n, "schedule")) {
        for item in list {
            match window(cx, item) {
                Some(w) => schedule.extend(w),
                None => ok = false,
            }
        }
    }
    let mut holidays = Vec::new();
    if let Some(list) = f.get("holidays").and_then(|n| cx.list(n, "holidays")) {
        for item in list {
            match cx.value(item, "date", |s| {
                s.parse::<Date>()
                    .map_err(|_| "expected a date like `2026-12-25`".into())
            }) {
                Some(d) => holidays.push(d),
                None => ok = false,
            }
        }
    }
    let open = f.get("open").and_then(|n| super::parse(cx, n));
    let closed = match f.get("closed") {
        Some(n) => Some(Box::new(super::parse(cx, n)?)),
        None => None,
    };
    if !ok {
        return None;
    }
    Some(Hours {
        tz: tz?,
        schedule,
        holidays,
        open: Box::new(open?),
        closed,
    })
}

/// Parses `UTC`, a fixed offset such as `+02:00`, or an IANA name such as `Europe/Berlin`.
fn parse_time_zone(s: &str) -> Result<TimeZone, String> {
    if s == "UTC" || s == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = s
        .strip_prefix('+')
        .map(|r| (1, r))
        .or_else(|| s.strip_prefix('-').map(|r| (-1, r)))
    {
        let (sign, body) = rest;
        let (h, m) = body.split_once(':').unwrap_or((body, "0"));
        let (h, m) = match (h.parse::<i32>(), m.parse::<i32>()) {
            (Ok(h), Ok(m)) if (0..=18).contains(&h) && (0..60).contains(&m) => (h, m),
            _ => return Err("expected an offset like `+02:00` or `-05:30`".into()),
        };
        let offset = Offset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|e| e.to_string())?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(s).map_err(|_| {
        "not an IANA time zone name (e.g. `Europe/Berlin`), `UTC` or an offset like `+02:00`".into()
    })
}

/// One schedule entry; `times` may list several ranges, giving one window each.
fn window(cx: &mut Cx<'_>, node: &Node) -> Option<Vec<Window>> {
    let f = cx.map(
        node,
        "a schedule entry",
        &["days", "times"],
        &["days", "times"],
    )?;
    let days = days(cx, f.get("days")?);
    let times_node = f.get("times")?;
    let ranges: Vec<&Node> = match &times_node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![times_node],
    };
    let mut out = Vec::new();
    let mut ok = true;
    for r in ranges {
        match cx.value(r, "time range", parse_range) {
            Some((start, end)) => out.push((start, end)),
            None => ok = false,
        }
    }
    let days = days?;
    if !ok {
        return None;
    }
    Some(
        out.into_iter()
            .map(|(start, end)| Window { days, start, end })
            .collect(),
    )
}

/// Parses `mon-fri`, `sat,sun`, `daily`, or a list of such items.
fn days(cx: &mut Cx<'_>, node: &Node) -> Option<[bool; 7]> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut set = [false; 7];
    let mut ok = true;
    for item in items {
        match cx.value(item, "days", parse_days) {
            Some(d) => (0..7).for_each(|i| set[i] |= d[i]),
            None => ok = false,
        }
    }
    ok.then_some(set)
}

fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let day = |d: &str| {
        DAYS.iter().position(|x| *x == d.trim()).ok_or_else(|| {
            format!(
                "`{}` is not a day; use mon, tue, wed, thu, fri, sat, sun",
                d.trim()
            )
        })
    };
    if s.trim() == "daily" {
        return Ok([true; 7]);
    }
    let mut set = [false; 7];
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                // Ranges may wrap the week: `fri-mon`.
                let (a, b) = (day(a)?, day(b)?);
                let mut i = a;
                loop {
                    set[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => set[day(part)?] = true,
        }
    }
    Ok(set)
}

/// Parses `HH:MM-HH:MM` into minutes after midnight; the end may be `24:00`.
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or("expected `HH:MM-HH:MM`, e.g. `09:00-17:00`")?;
    let start = parse_hhmm(a.trim(), false)?;
    let end = parse_hhmm(b.trim(), true)?;
    if start == end {
        return Err("start and end are equal; write `00:00-24:00` for the whole day".into());
    }
    Ok((start, end))
}

fn parse_hhmm(s: &str, may_be_24: bool) -> Result<u16, String> {
    let bad = || format!("`{s}` is not a time like `09:30`");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    match (h, m) {
        (24, 0) if may_be_24 => Ok(1440),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

impl Hours {
    /// Whether the company is open at `now`.
    pub(crate) fn is_open(&self, now: jiff::Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        if self.holidays.contains(&local.date()) {
            return false;
        }
        let day = usize::try_from(local.weekday().to_monday_zero_offset()).unwrap_or(0);
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        self.schedule.iter().any(|w| w.contains(day, minute))
    }

    pub(crate) fn evaluate(&self, ev: &mut super::Eval<'_>) -> Decision {
        if self.is_open(ev.now) {
            ev.run(&self.open)
        } else {
            match &self.closed {
                Some(a) => ev.run(a),
                None => Decision::Reject {
                    code: 480,
                    reason: "Closed".into(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Day lists accept ranges, wrap-around ranges, lists and `daily`.
    #[test]
    fn day_sets() {
        let t = true;
        let f = false;
        assert_eq!(parse_days("mon-fri"), Ok([t, t, t, t, t, f, f]));
        assert_eq!(parse_days("sat,sun"), Ok([f, f, f, f, f, t, t]));
        assert_eq!(parse_days("fri-mon"), Ok([t, f, f, f, t, t, t]));
        assert_eq!(parse_days("daily"), Ok([t; 7]));
        assert!(parse_days("mon-fry").is_err());
        assert!(parse_days("").is_err());
    }

    /// Time ranges parse to minutes and refuse nonsense.
    #[test]
    fn ranges() {
        assert_eq!(parse_range("09:00-17:00"), Ok((540, 1020)));
        assert_eq!(parse_range("22:00-06:00"), Ok((1320, 360)));
        assert_eq!(parse_range("00:00-24:00"), Ok((0, 1440)));
        for bad in [
            "9-17",
            "09:00",
            "24:00-01:00",
            "09:60-10:00",
            "10:00-10:00",
            "09:00-17:0",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    /// Overnight windows belong to the day they start on.
    #[test]
    fn overnight_window() {
        let w = Window {
            days: [false, false, false, false, true, false, false],
            start: 1320,
            end: 360,
        };
        assert!(w.contains(4, 1320)); // fri 22:00
        assert!(w.contains(5, 180)); // sat 03:00
        assert!(!w.contains(5, 360)); // sat 06:00
        assert!(!w.contains(4, 180)); // fri 03:00 belongs to thursday's window
    }

    /// Time zones parse as names, UTC and fixed offsets.
    #[test]
    fn time_zones() {
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        assert!(parse_time_zone("UTC").is_ok());
        assert!(parse_time_zone("+05:30").is_ok());
        assert!(parse_time_zone("-03:00").is_ok());
        assert!(parse_time_zone("Europe/Berlim").is_err());
        assert!(parse_time_zone("+25:00").is_err());
    }
}
