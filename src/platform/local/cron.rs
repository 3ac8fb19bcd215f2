//! Cron triggers of the local platform, fired the way Nuclio 1.14.1's processor fires them
//! (`pkg/processor/trigger/cron/`: `types.go` reads the attributes, `trigger.go` ticks,
//! `event.go` is the event).
//!
//! [`triggers`] reads every `kind: cron` trigger of a function.yaml; a deploy calls it first and
//! refuses a trigger it cannot parse. When a version starts serving, [`start`] spawns one task
//! per trigger that fires the trigger's event into that version's pool; the [`Crons`] it returns
//! is kept by the pool (`Pool::keep_until_stopped`), which drops it, and so stops every ticker,
//! first thing when it stops (regroup, delete, shutdown).
//!
//! One tick fires once. A regroup deploys the new functions before it deletes the old ones, and a
//! redeploy starts the new version before it stops the old, so for a moment a task's cron
//! trigger runs in two places. Every ticker therefore claims its trigger in the platform's
//! [`Registry`] under the task and the trigger's own key (the name fusion namespaced as
//! `<task>-<key>` counts as `<key>`), and only the newest claim fires, each tick at most once.
//! The registry also counts the fired events for serve's metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Local, TimeDelta, Timelike, Utc};
use serde_norway::{Mapping, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::pool::{Pool, PoolError};
use super::protocol::{Trigger, TriggerEvent};
use crate::contract::{HEADER_TASK_NAME, TRIGGER_KIND_CRON};
use crate::platform::TriggerEvents;

/// One cron trigger of a function, parsed.
#[derive(Debug)]
pub(super) struct CronTrigger {
    /// The trigger's name, as events give it (`event.trigger.name`): its `name`, else its key
    /// (Nuclio's enrichment sets a missing `name` to the key).
    name: String,
    tick: Tick,
    event: CronEvent,
    /// The task its events are for (`Task-Name` in `attributes.event.headers`, which fusion
    /// sets), for log lines.
    task: Option<String>,
    /// What it claims in the [`Registry`].
    claim: String,
}

/// When a trigger fires.
#[derive(Debug)]
enum Tick {
    /// `interval`: a Go duration; each event `interval` after the previous one was handled
    /// (trigger.go, `calculateNextEventSubmittingTime`, `tickMethodInterval`), not rounded.
    Interval(Duration),
    /// `schedule: "@every <duration>"`: robfig/cron's `Every`, whole seconds, at least one
    /// (constantdelay.go), counted from the whole second of the previous event.
    Every(Duration),
    /// `schedule`: a cron expression, in the local time zone (robfig/cron's parser defaults
    /// to `time.Local`) or in UTC (`TZ=UTC`/`CRON_TZ=UTC`).
    Schedule { cron: Box<croner::Cron>, utc: bool },
}

impl Tick {
    /// When the event after one submitted at `last` is due (trigger.go,
    /// `calculateNextEventSubmittingTime`); `None` when never again.
    fn next_after(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Tick::Interval(delay) => last.checked_add_signed(TimeDelta::from_std(*delay).ok()?),
            // robfig/cron constantdelay.go: `t.Add(Delay - t.Nanosecond())`.
            Tick::Every(delay) => last
                .with_nanosecond(0)?
                .checked_add_signed(TimeDelta::from_std(*delay).ok()?),
            Tick::Schedule { cron, utc: true } => cron.find_next_occurrence(&last, false).ok(),
            Tick::Schedule { cron, utc: false } => cron
                .find_next_occurrence(&last.with_timezone(&Local), false)
                .ok()
                .map(|next| next.with_timezone(&Utc)),
        }
    }
}

/// The event a cron trigger fires: `attributes.event` (types.go, `Event`; event.go).
#[derive(Debug, Default, PartialEq)]
struct CronEvent {
    body: Vec<u8>,
    path: String,
    method: String,
    /// As written, values of any type (event.go: `Headers map[string]interface{}`).
    headers: serde_json::Map<String, serde_json::Value>,
}

impl CronEvent {
    /// The event as the worker receives it. event.go overrides only the body, path, method,
    /// headers and timestamp of nuclio-sdk-go's `AbstractEvent`: no content type and no fields,
    /// and the timestamp is `time.Unix(0, 0)`. The processor adds the trigger's kind and name
    /// (pkg/processor/trigger/trigger.go, `prepareEvent`).
    fn to_event<'a>(&'a self, trigger: &'a str) -> TriggerEvent<'a> {
        TriggerEvent {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            content_type: "",
            timestamp: 0,
            trigger: Trigger {
                kind: TRIGGER_KIND_CRON,
                name: trigger,
            },
            body: &self.body,
        }
    }
}

/// Every `kind: cron` trigger of `function_yaml`, in name order; an error names the trigger
/// that cannot be parsed and says why.
pub(super) fn triggers(function_yaml: &str) -> Result<Vec<CronTrigger>, String> {
    let doc: Value = serde_norway::from_str(function_yaml)
        .map_err(|e| format!("its function.yaml is not valid YAML: {e}"))?;
    let Some(triggers) = doc
        .get("spec")
        .and_then(|s| s.get("triggers"))
        .and_then(Value::as_mapping)
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, trigger) in triggers {
        if trigger.get("kind").and_then(Value::as_str) != Some(TRIGGER_KIND_CRON) {
            continue;
        }
        let key = key.as_str().unwrap_or_default();
        let name = match trigger.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name,
            _ => key,
        };
        let parsed = parse(name, trigger).map_err(|e| format!("cron trigger `{name}`: {e}"))?;
        out.push(parsed);
    }
    // Two triggers of one function that would claim the same tick (a task's `tick` and its own
    // `<task>-tick`) each claim their own.
    let mut seen = BTreeMap::new();
    for trigger in &out {
        *seen.entry(trigger.claim.clone()).or_insert(0) += 1;
    }
    for trigger in &mut out {
        if seen[&trigger.claim] > 1 {
            trigger.claim = format!("{} trigger {}", trigger.claim, trigger.name);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn parse(name: &str, trigger: &Value) -> Result<CronTrigger, String> {
    let empty = Mapping::new();
    let attributes = mapping(trigger.get("attributes"), "attributes", &empty)?;
    let interval = string(attributes, "interval")?;
    let schedule = string(attributes, "schedule")?;
    // trigger.go, `newTrigger`: `interval` wins when both are set.
    let tick = if !interval.is_empty() {
        self::interval(&interval)?
    } else if !schedule.is_empty() {
        self::schedule(&schedule)?
    } else {
        return Err("Cron trigger configuration must contain either interval or schedule".into());
    };
    let event = mapping(field(attributes, "event"), "attributes.event", &empty)?;
    let headers = match field(event, "headers") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Mapping(headers)) => headers
            .iter()
            .map(|(k, v)| (key_text(k), to_json(v)))
            .collect(),
        Some(_) => return Err("`attributes.event.headers` must be a mapping".into()),
    };
    let event = CronEvent {
        body: string(event, "body")?.into_bytes(),
        path: string(event, "path")?,
        method: string(event, "method")?,
        headers,
    };
    let task = match event.headers.get(HEADER_TASK_NAME) {
        Some(serde_json::Value::String(task)) => Some(task.clone()),
        _ => None,
    };
    let claim = match &task {
        // fusion names a task's trigger `<task>-<key>` when another task of the group has the
        // same key; in another grouping the same trigger is `<key>`.
        Some(task) => {
            let own = name
                .strip_prefix(task.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .unwrap_or(name);
            format!("task {task} {own}")
        }
        None => format!("trigger {name}"),
    };
    Ok(CronTrigger {
        name: name.to_string(),
        tick,
        event,
        task,
        claim,
    })
}

/// `map[name]` as mapstructure matches a struct field (types.go decodes the attributes with
/// it): the exact key, else one equal ignoring case.
fn field<'v>(map: &'v Mapping, name: &str) -> Option<&'v Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v)
    })
}

/// A mapping attribute; absent or null is empty (mapstructure leaves the zero value).
fn mapping<'v>(
    value: Option<&'v Value>,
    path: &str,
    empty: &'v Mapping,
) -> Result<&'v Mapping, String> {
    match value {
        None | Some(Value::Null) => Ok(empty),
        Some(Value::Mapping(map)) => Ok(map),
        Some(_) => Err(format!("`{path}` must be a mapping")),
    }
}

/// A string attribute (types.go and event.go declare these `string`, and mapstructure refuses
/// to decode another type into one); absent or null is empty.
fn string(map: &Mapping, name: &str) -> Result<String, String> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(format!("`{name}` must be a string; quote it")),
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => match to_json(other) {
            serde_json::Value::String(s) => s,
            json => json.to_string(),
        },
    }
}

/// A YAML value as the JSON the processor hands the runtime.
fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Value::String(s) => s.clone().into(),
        Value::Sequence(items) => items.iter().map(to_json).collect(),
        Value::Mapping(map) => {
            serde_json::Value::Object(map.iter().map(|(k, v)| (key_text(k), to_json(v))).collect())
        }
        Value::Tagged(tagged) => to_json(&tagged.value),
    }
}

/// trigger.go, `setInterval`: a Go duration used as it is (`ConstantDelaySchedule` without
/// `Every`'s rounding).
fn interval(text: &str) -> Result<Tick, String> {
    let failed = |e: String| {
        format!("Failed to parse interval from cron trigger configuration: {text}: {e}")
    };
    let (negative, delay) = go_duration(text).map_err(failed)?;
    if negative || delay.is_zero() {
        // Nuclio would fire back to back (zero) or never again (negative, its missed-tick loop
        // does not end); refused here instead.
        return Err(failed(
            "the interval must be positive on the local platform".to_string(),
        ));
    }
    Ok(Tick::Interval(delay))
}

/// trigger.go, `parseEncodedSchedule`, then robfig/cron v3's parser with the options Nuclio
/// gives it (`SecondOptional | Minute | Hour | Dom | Month | Dow | Descriptor`, parser.go).
fn schedule(text: &str) -> Result<Tick, String> {
    // "prevent the user from using * as Seconds": split on single spaces, and when there are
    // more than five parts and the first is `*`, it becomes `0`.
    let mut parts: Vec<&str> = text.split(' ').collect();
    if parts.len() > 5 && parts[0] == "*" {
        parts[0] = "0";
    }
    let spec = parts.join(" ");
    robfig_parse(&spec).map_err(|e| {
        format!("Failed to parse schedule from cron trigger configuration: {text}: {e}")
    })
}

/// robfig/cron v3.0.1 `Parser.Parse` (parser.go): an optional `TZ=`/`CRON_TZ=` prefix, a
/// descriptor (`@daily`, `@every 1h`, …), or five or six fields (seconds optional, default 0).
/// The fields are checked here exactly as robfig/cron checks them and handed to croner as
/// plain numbers, so the schedule matches the same times.
fn robfig_parse(spec: &str) -> Result<Tick, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    let mut utc = false;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let Some(space) = spec.find(' ') else {
            return Err("a time zone must be followed by a schedule".into());
        };
        let eq = spec.find('=').expect("prefix has `=`");
        match &spec[eq + 1..space] {
            "UTC" | "" => utc = true,
            "Local" => {}
            zone => {
                return Err(format!(
                    "time zone `{zone}`: the local platform knows only `UTC` and `Local`"
                ))
            }
        }
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        let pattern = match spec {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            _ => {
                if let Some(duration) = spec.strip_prefix("@every ") {
                    let (negative, delay) = go_duration(duration)
                        .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                    // constantdelay.go, `Every`: at least one second, whole seconds.
                    let delay = if negative || delay < Duration::from_secs(1) {
                        Duration::from_secs(1)
                    } else {
                        Duration::from_secs(delay.as_secs())
                    };
                    return Ok(Tick::Every(delay));
                }
                return Err(format!("unrecognized descriptor: {spec}"));
            }
        };
        return croner_schedule(pattern, utc);
    }
    let mut fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() < 5 || fields.len() > 6 {
        return Err(format!(
            "expected 5 to 6 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    if fields.len() == 5 {
        fields.insert(0, "0");
    }
    let bounds: [(u32, u32, &[&str], u32); 6] = [
        (0, 59, &[], 0),
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, MONTHS, 1),
        (0, 6, DAYS, 0),
    ];
    let mut pattern = Vec::with_capacity(6);
    for (text, (min, max, names, first)) in fields.iter().zip(bounds) {
        let (values, star) = robfig_field(text, min, max, names, first)?;
        if values.is_empty() {
            return Err(format!("field `{text}` matches no time"));
        }
        pattern.push(if star {
            "*".to_string()
        } else {
            values
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
    }
    croner_schedule(&pattern.join(" "), utc)
}

/// Month names (parseable in the month field) and day names (in the day-of-week field), from
/// robfig/cron's spec.go.
const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The values one field matches, and whether it has robfig/cron's star bit (parser.go,
/// `getField`/`getRange`): a `*` or `?` with step 1 somewhere in it, which makes day-of-month
/// and day-of-week match together instead of either (spec.go, `dayMatches`).
fn robfig_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    first: u32,
) -> Result<(BTreeSet<u32>, bool), String> {
    let int_or_name = |text: &str| -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(first + i as u32);
        }
        must_parse_int(text)
    };
    let mut values = BTreeSet::new();
    let mut star = false;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        let range_and_step: Vec<&str> = expr.split('/').collect();
        let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
        let single = low_and_high.len() == 1;
        let (start, mut end, mut extra) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
            (min, max, true)
        } else {
            let start = int_or_name(low_and_high[0])?;
            let end = match low_and_high.len() {
                1 => start,
                2 => int_or_name(low_and_high[1])?,
                _ => return Err(format!("too many hyphens: {expr}")),
            };
            (start, end, false)
        };
        let step = match range_and_step.len() {
            1 => 1,
            2 => {
                let step = must_parse_int(range_and_step[1])?;
                if single {
                    end = max; // "N/step" means "N-max/step"
                }
                if step > 1 {
                    extra = false;
                }
                step
            }
            _ => return Err(format!("too many slashes: {expr}")),
        };
        if start < min {
            return Err(format!(
                "beginning of range ({start}) below minimum ({min}): {expr}"
            ));
        }
        if end > max {
            return Err(format!(
                "end of range ({end}) above maximum ({max}): {expr}"
            ));
        }
        if start > end {
            return Err(format!(
                "beginning of range ({start}) beyond end of range ({end}): {expr}"
            ));
        }
        if step == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
        values.extend((start..=end).step_by(step as usize));
        star |= extra;
    }
    Ok((values, star))
}

/// parser.go, `mustParseInt`: Go's `strconv.Atoi` (an optional sign, decimal digits), not
/// negative.
fn must_parse_int(text: &str) -> Result<u32, String> {
    let num: i64 = text
        .parse()
        .map_err(|_| format!("failed to parse int from {text}: invalid syntax"))?;
    if num < 0 {
        return Err(format!("negative number ({num}) not allowed: {text}"));
    }
    u32::try_from(num).map_err(|_| format!("failed to parse int from {text}: value out of range"))
}

/// Six plain fields (seconds first) as croner's schedule; refused when it never fires.
fn croner_schedule(pattern: &str, utc: bool) -> Result<Tick, String> {
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())?;
    let tick = Tick::Schedule {
        cron: Box::new(cron),
        utc,
    };
    // robfig/cron gives up after five years and Nuclio's trigger then spins; refused here.
    if tick.next_after(Utc::now()).is_none() {
        return Err("the schedule never fires".into());
    }
    Ok(tick)
}

/// Go's `time.ParseDuration` (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units `ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`; `0` alone needs none): whether it is negative, and its length.
fn go_duration(orig: &str) -> Result<(bool, Duration), String> {
    const LIMIT: u128 = 1 << 63;
    let invalid = || format!("time: invalid duration \"{orig}\"");
    let mut s = orig;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok((false, Duration::ZERO));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let bytes = s.as_bytes();
        if !(bytes[0] == b'.' || bytes[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut whole: u128 = 0;
        for b in &bytes[..digits] {
            whole = whole * 10 + u128::from(b - b'0');
            if whole >= LIMIT {
                return Err(invalid());
            }
        }
        s = &s[digits..];
        let mut fraction: u128 = 0;
        let mut scale: f64 = 1.0;
        let mut fraction_digits = 0;
        if let Some(rest) = s.strip_prefix('.') {
            fraction_digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            for b in rest[..fraction_digits].bytes() {
                if fraction < LIMIT / 10 {
                    fraction = fraction * 10 + u128::from(b - b'0');
                    scale *= 10.0;
                }
            }
            s = &rest[fraction_digits..];
        }
        if digits == 0 && fraction_digits == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|b| *b != b'.' && !b.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration \"{orig}\""));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{orig}\""
                ))
            }
        };
        let mut value = whole * nanos;
        if fraction > 0 {
            #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]
            let part = (fraction as f64 * (nanos as f64 / scale)) as u128;
            value += part;
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if !negative && total > LIMIT - 1 {
        return Err(invalid());
    }
    let nanos = u64::try_from(total).map_err(|_| invalid())?;
    Ok((negative, Duration::from_nanos(nanos)))
}

/// Which ticker may fire each tick, over every function and version this process runs, and how
/// many events each trigger fired.
#[derive(Debug, Default)]
pub(super) struct Registry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_claim: u64,
    claims: BTreeMap<String, Claims>,
    /// (function, trigger, result) → events.
    fired: BTreeMap<(String, String, &'static str), u64>,
}

#[derive(Debug, Default)]
struct Claims {
    /// Live claims; the newest (largest) fires.
    live: BTreeSet<u64>,
    /// The last tick fired under this claim key.
    last: Option<DateTime<Utc>>,
}

impl Registry {
    fn claim(&self, key: &str) -> u64 {
        let mut state = self.state.lock().expect("cron registry poisoned");
        state.next_claim += 1;
        let id = state.next_claim;
        state
            .claims
            .entry(key.to_string())
            .or_default()
            .live
            .insert(id);
        id
    }

    fn release(&self, claims: &[(String, u64)]) {
        let mut state = self.state.lock().expect("cron registry poisoned");
        for (key, id) in claims {
            if let Some(claims) = state.claims.get_mut(key) {
                claims.live.remove(id);
            }
        }
    }

    /// Whether claim `id` fires the tick due at `at`: it is the newest live claim of `key` and
    /// no claim of `key` fired `at` or a later tick yet. `true` records the tick.
    fn begin(&self, key: &str, id: u64, at: DateTime<Utc>) -> bool {
        let mut state = self.state.lock().expect("cron registry poisoned");
        let Some(claims) = state.claims.get_mut(key) else {
            return false;
        };
        if claims.live.last() != Some(&id) || claims.last.is_some_and(|last| at <= last) {
            return false;
        }
        claims.last = Some(at);
        true
    }

    fn count(&self, function: &str, trigger: &str, result: &'static str) {
        let mut state = self.state.lock().expect("cron registry poisoned");
        *state
            .fired
            .entry((function.to_string(), trigger.to_string(), result))
            .or_insert(0) += 1;
    }

    /// Running totals of fired events ([`crate::platform::Platform::trigger_events`]).
    pub(super) fn fired(&self) -> Vec<TriggerEvents> {
        let state = self.state.lock().expect("cron registry poisoned");
        state
            .fired
            .iter()
            .map(|((function, trigger, result), total)| TriggerEvents {
                function: function.clone(),
                trigger: trigger.clone(),
                kind: TRIGGER_KIND_CRON.to_string(),
                result: (*result).to_string(),
                total: *total,
            })
            .collect()
    }
}

/// The tickers firing into one pool. Dropping it stops them: their claims go at once, so no
/// later tick fires, and each ticker ends at its next wait (an event already sent is answered
/// or drained like any request).
pub(super) struct Crons {
    registry: Arc<Registry>,
    claims: Vec<(String, u64)>,
    /// Closed on drop: the tickers' signal to end.
    _stop: watch::Sender<()>,
    _tickers: Vec<JoinHandle<()>>,
}

impl Drop for Crons {
    fn drop(&mut self) {
        self.registry.release(&self.claims);
    }
}

/// Starts one ticker per trigger, firing into `pool` (the version of `function` that starts
/// serving). Each claims its trigger before it returns, so a version started later takes over.
pub(super) fn start(
    pool: &Arc<Pool>,
    function: &str,
    triggers: Vec<CronTrigger>,
    registry: &Arc<Registry>,
) -> Crons {
    let (stop, _) = watch::channel(());
    let mut claims = Vec::with_capacity(triggers.len());
    let mut tickers = Vec::with_capacity(triggers.len());
    for trigger in triggers {
        let id = registry.claim(&trigger.claim);
        claims.push((trigger.claim.clone(), id));
        tracing::debug!(
            function,
            trigger = trigger.name.as_str(),
            "starting the cron trigger"
        );
        tickers.push(tokio::spawn(tick(
            Ticker {
                function: function.to_string(),
                trigger,
                pool: Arc::downgrade(pool),
                registry: registry.clone(),
                claim: id,
            },
            stop.subscribe(),
        )));
    }
    Crons {
        registry: registry.clone(),
        claims,
        _stop: stop,
        _tickers: tickers,
    }
}

struct Ticker {
    function: String,
    trigger: CronTrigger,
    pool: Weak<Pool>,
    registry: Arc<Registry>,
    claim: u64,
}

/// trigger.go, `handleEvents`: the first event is due one tick after the start; each event is
/// submitted and handled before the next is scheduled, one tick after it. A tick missed (the
/// machine slept, the clock jumped) fires at once, and only once: missed ticks are not caught
/// up (`getNextEventSubmitDelay`).
async fn tick(ticker: Ticker, mut stop: watch::Receiver<()>) {
    let Ticker {
        function,
        trigger,
        pool,
        registry,
        claim,
    } = ticker;
    let task = trigger.task.as_deref().unwrap_or("-");
    let mut last = Utc::now();
    loop {
        let Some(due) = trigger.tick.next_after(last) else {
            tracing::warn!(
                function,
                trigger = trigger.name.as_str(),
                task,
                "the cron trigger's schedule has no next time; it stops firing"
            );
            return;
        };
        let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if registry.begin(&trigger.claim, claim, due) {
            let Some(pool) = pool.upgrade() else { return };
            let result = pool.fire(&trigger.event.to_event(&trigger.name)).await;
            drop(pool);
            let outcome = match result {
                Ok(response) if response.status < 400 => "ok",
                Ok(response) => {
                    let body = String::from_utf8_lossy(&response.body);
                    let body: String = body.chars().take(500).collect();
                    tracing::warn!(
                        function,
                        trigger = trigger.name.as_str(),
                        task,
                        status = response.status,
                        "a cron event was answered with status {}: {}",
                        response.status,
                        body.trim_end()
                    );
                    "error"
                }
                Err(PoolError::Retired) => return, // the version stopped meanwhile
                Err(PoolError::Invoke(e)) => {
                    tracing::warn!(
                        function,
                        trigger = trigger.name.as_str(),
                        task,
                        "a cron event failed: {e}"
                    );
                    "failed"
                }
            };
            registry.count(&function, &trigger.name, outcome);
        }
        // trigger.go: `lastRunTime = time.Now()` once the event was handled (never before the
        // tick itself, so a tick is not due twice).
        last = Utc::now().max(due);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(yaml: &str) -> CronTrigger {
        let mut all = triggers(yaml).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    fn cron_yaml(attributes: &str) -> String {
        format!(
            "spec:\n  triggers:\n    http:\n      kind: http\n    tick:\n      kind: cron\n      attributes:\n{attributes}"
        )
    }

    fn refused(attributes: &str) -> String {
        triggers(&cron_yaml(attributes)).unwrap_err()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn go_durations_parse_as_time_parse_duration_does() {
        let ok = |text: &str| go_duration(text).unwrap();
        assert_eq!(ok("1s"), (false, Duration::from_secs(1)));
        assert_eq!(ok("1h30m"), (false, Duration::from_secs(5400)));
        assert_eq!(ok("1.5s"), (false, Duration::from_millis(1500)));
        assert_eq!(ok(".5s"), (false, Duration::from_millis(500)));
        assert_eq!(ok("300ms"), (false, Duration::from_millis(300)));
        assert_eq!(ok("2\u{b5}s"), (false, Duration::from_micros(2)));
        assert_eq!(ok("+10s"), (false, Duration::from_secs(10)));
        assert_eq!(ok("-1m"), (true, Duration::from_secs(60)));
        assert_eq!(ok("0"), (false, Duration::ZERO));
        assert_eq!(
            go_duration("10").unwrap_err(),
            "time: missing unit in duration \"10\""
        );
        assert_eq!(
            go_duration("1d").unwrap_err(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        for bad in ["", "s", ".s", "1 s", "-", "1s ", "99999999999h"] {
            assert!(go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_interval_fires_each_interval_after_the_last_event_unrounded() {
        let trigger = only(&cron_yaml("        interval: 1500ms\n"));
        assert_eq!(trigger.name, "tick");
        let last = at("2024-01-01T00:00:00.250Z");
        assert_eq!(
            trigger.tick.next_after(last),
            Some(at("2024-01-01T00:00:01.750Z"))
        );
    }

    #[test]
    fn interval_wins_over_schedule_and_one_of_them_is_required() {
        let both = only(&cron_yaml(
            "        interval: 10s\n        schedule: \"0 0 * * *\"\n",
        ));
        assert!(matches!(both.tick, Tick::Interval(d) if d == Duration::from_secs(10)));
        assert_eq!(
            refused("        event:\n          body: x\n"),
            "cron trigger `tick`: Cron trigger configuration must contain either interval or schedule"
        );
        assert_eq!(
            refused("        interval: \"\"\n        schedule: \"\"\n"),
            "cron trigger `tick`: Cron trigger configuration must contain either interval or schedule"
        );
    }

    #[test]
    fn unparsable_or_non_positive_intervals_are_refused_naming_the_trigger() {
        let err = refused("        interval: 10x\n");
        assert!(
            err.starts_with("cron trigger `tick`: Failed to parse interval"),
            "{err}"
        );
        assert!(err.contains("unknown unit \"x\""), "{err}");
        assert!(refused("        interval: 0s\n").contains("must be positive"));
        assert!(refused("        interval: -1s\n").contains("must be positive"));
        assert!(refused("        interval: 10\n").contains("must be a string"));
    }

    #[test]
    fn schedules_take_five_or_six_fields_with_robfig_cron_rules() {
        let next = |schedule: &str, from: &str| {
            let trigger = only(&cron_yaml(&format!(
                "        schedule: \"TZ=UTC {schedule}\"\n"
            )));
            trigger.tick.next_after(at(from)).unwrap()
        };
        // Five fields: seconds 0.
        assert_eq!(
            next("*/5 * * * *", "2024-01-01T00:03:10Z"),
            at("2024-01-01T00:05:00Z")
        );
        // Six fields: seconds first.
        assert_eq!(
            next("*/10 * * * * *", "2024-01-01T00:00:01Z"),
            at("2024-01-01T00:00:10Z")
        );
        // Strictly after: a tick is never due twice.
        assert_eq!(
            next("30 * * * * *", "2024-01-01T00:00:30Z"),
            at("2024-01-01T00:01:30Z")
        );
        // Names, `?`, and "N/step" meaning "N-max/step".
        assert_eq!(
            next("0 0 12 ? jan-mar mon", "2024-01-01T12:00:00Z"),
            at("2024-01-08T12:00:00Z")
        );
        assert_eq!(
            next("0 50/5 * * * *", "2024-01-01T00:56:00Z"),
            at("2024-01-01T01:50:00Z")
        );
        // Both days restricted: either matches (2024-01-05 is the 5th, 2024-01-02 a Tuesday).
        assert_eq!(
            next("0 0 0 5 * tue", "2024-01-01T00:00:00Z"),
            at("2024-01-02T00:00:00Z")
        );
        // A `*/2` day of month is not a star in robfig/cron: still either.
        assert_eq!(
            next("0 0 0 */2 * tue", "2024-01-01T00:00:00Z"),
            at("2024-01-02T00:00:00Z")
        );
        // A star day of month: the day of week alone.
        assert_eq!(
            next("0 0 0 * * fri", "2024-01-01T00:00:00Z"),
            at("2024-01-05T00:00:00Z")
        );
        // Descriptors.
        assert_eq!(
            next("@hourly", "2024-01-01T00:00:00Z"),
            at("2024-01-01T01:00:00Z")
        );
        assert_eq!(
            next("@weekly", "2024-01-01T00:00:00Z"),
            at("2024-01-07T00:00:00Z")
        );
        assert_eq!(
            next("@midnight", "2024-01-01T10:00:00Z"),
            at("2024-01-02T00:00:00Z")
        );
        // `@every`: whole seconds from the whole second of the last event, at least one.
        assert_eq!(
            next("@every 1500ms", "2024-01-01T00:00:00.700Z"),
            at("2024-01-01T00:00:01Z")
        );
        assert_eq!(
            next("@every 100ms", "2024-01-01T00:00:00.700Z"),
            at("2024-01-01T00:00:01Z")
        );
    }

    #[test]
    fn a_star_seconds_field_becomes_zero_as_nuclio_rewrites_it() {
        let trigger = only(&cron_yaml("        schedule: \"* * * * * *\"\n"));
        let local = Local::now().with_timezone(&Utc);
        let next = trigger.tick.next_after(local).unwrap();
        assert_eq!(next.second(), 0, "{next}");
    }

    #[test]
    fn schedules_robfig_cron_refuses_are_refused_naming_the_trigger() {
        let cases = [
            ("* * * *", "expected 5 to 6 fields, found 4"),
            ("0 0 0 * * * *", "expected 5 to 6 fields, found 7"),
            ("0 0 * * 7", "end of range (7) above maximum (6)"),
            ("0 0 L * *", "failed to parse int from L"),
            ("0 0 1W * *", "failed to parse int from 1W"),
            ("0 0 * * 5#2", "failed to parse int from 5#2"),
            ("0 0 0 * *", "beginning of range (0) below minimum (1)"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1)",
            ),
            ("*/0 * * * *", "step of range should be a positive number"),
            ("1-2-3 * * * *", "too many hyphens"),
            ("*/2/3 * * * *", "too many slashes"),
            ("-1 * * * *", "failed to parse int from"),
            ("@DAILY", "unrecognized descriptor: @DAILY"),
            ("@every 1d", "failed to parse duration @every 1d"),
            ("0 0 0 30 2 *", "never fires"),
            ("TZ=Europe/Paris 0 0 * * *", "knows only `UTC` and `Local`"),
        ];
        for (schedule, expected) in cases {
            let err = refused(&format!("        schedule: \"{schedule}\"\n"));
            assert!(
                err.starts_with(&format!(
                    "cron trigger `tick`: Failed to parse schedule from cron trigger configuration: {schedule}: "
                )),
                "{schedule}: {err}"
            );
            assert!(err.contains(expected), "{schedule}: {err}");
        }
    }

    #[test]
    fn the_event_is_attributes_event_with_the_trigger_and_nothing_else() {
        let trigger = only(
            "spec:\n  triggers:\n    taska-tick:\n      kind: cron\n      name: taska-tick\n      attributes:\n        Interval: 1s\n        event:\n          body: hello\n          method: PUT\n          headers:\n            Task-Name: taska\n            X-Count: 3\n            X-On: true\n",
        );
        assert_eq!(trigger.name, "taska-tick");
        assert_eq!(trigger.task.as_deref(), Some("taska"));
        assert_eq!(trigger.claim, "task taska tick");
        let event = trigger.event.to_event(&trigger.name);
        assert_eq!(event.body, b"hello");
        assert_eq!(event.method, "PUT");
        assert_eq!(event.path, "");
        assert_eq!(event.content_type, "");
        assert_eq!(event.timestamp, 0);
        assert_eq!(event.trigger.kind, "cron");
        assert_eq!(event.trigger.name, "taska-tick");
        assert_eq!(
            serde_json::Value::Object(event.headers.clone()),
            serde_json::json!({"Task-Name": "taska", "X-Count": 3, "X-On": true})
        );

        // No event: an empty body, no headers.
        let bare = only(&cron_yaml("        interval: 1s\n"));
        assert_eq!(bare.event, CronEvent::default());
        assert_eq!(bare.claim, "trigger tick");
        assert!(
            refused("        interval: 1s\n        event:\n          body: 5\n")
                .contains("`body` must be a string")
        );
        assert!(refused("        interval: 1s\n        event: [x]\n")
            .contains("`attributes.event` must be a mapping"));
    }

    #[test]
    fn only_cron_triggers_are_read_and_a_function_without_triggers_has_none() {
        assert!(triggers("spec:\n  handler: main:handler\n")
            .unwrap()
            .is_empty());
        assert!(
            triggers("spec:\n  triggers:\n    q:\n      kind: kafka-cluster\n")
                .unwrap()
                .is_empty()
        );
        assert!(triggers(": [").unwrap_err().contains("not valid YAML"));
    }

    #[test]
    fn the_newest_claim_fires_each_tick_once() {
        let registry = Registry::default();
        let old = registry.claim("task a tick");
        let t1 = at("2024-01-01T00:00:01Z");
        assert!(registry.begin("task a tick", old, t1));
        let new = registry.claim("task a tick");
        let t2 = at("2024-01-01T00:00:02Z");
        assert!(!registry.begin("task a tick", old, t2), "superseded");
        assert!(!registry.begin("task a tick", new, t1), "already fired");
        assert!(registry.begin("task a tick", new, t2));
        registry.release(&[("task a tick".to_string(), new)]);
        let t3 = at("2024-01-01T00:00:03Z");
        assert!(
            registry.begin("task a tick", old, t3),
            "the older one resumes"
        );
        registry.release(&[("task a tick".to_string(), old)]);
        assert!(!registry.begin("task a tick", old, at("2024-01-01T00:00:04Z")));

        registry.count("f", "tick", "ok");
        registry.count("f", "tick", "ok");
        registry.count("f", "tick", "failed");
        let fired = registry.fired();
        assert_eq!(fired.len(), 2);
        assert_eq!(
            (
                fired[1].result.as_str(),
                fired[1].total,
                fired[1].kind.as_str()
            ),
            ("ok", 2, "cron")
        );
    }
}
