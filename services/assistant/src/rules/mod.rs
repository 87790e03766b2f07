//! The offline rules engine: everyday English in, tool calls against the tasks API out, and a
//! reply built from what the tools really answered.
//!
//! It keeps no state in memory. What it must remember between turns (the last list shown, a
//! question waiting for an answer, what "undo" would revert) travels in [`Reply::state`], is
//! stored with the assistant's message by the caller, and is read back from the newest
//! assistant message of [`Context::history`] that has one.

pub mod dates;
pub mod parse;
pub mod refs;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{HistoryMessage, Role, ToolCall};
use crate::tools::{TaskView, UserTools};
use dates::Clock;
use parse::{Change, DueChange, Intent, ListQuery, NewTask, Op, Target};
use refs::{Item, Memory, Resolution};

pub struct Context<'a> {
    pub now: time::OffsetDateTime,
    /// IANA zone, "UTC" by default.
    pub tz: &'a str,
    /// Oldest first.
    pub history: &'a [HistoryMessage],
}

pub struct Reply {
    pub response: String,
    pub tool_calls: Vec<ToolCall>,
    pub state: Option<Value>,
}

/// A question waiting for the user's next message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// "yes"/"no" before an action on several tasks.
    Confirm { op: Op, tasks: Vec<Item> },
    /// Several tasks fit a reference: which one (the candidates are also the last list).
    Choose { op: Op, candidates: Vec<Item> },
}

/// What "undo" reverts: the last change, as it was before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    Added {
        tasks: Vec<Item>,
    },
    /// `was` is each task's completion before the change.
    Completed {
        tasks: Vec<Item>,
        was: Vec<bool>,
    },
    /// The deleted tasks as they were (`TaskView` JSON), to create them again.
    Deleted {
        tasks: Vec<Value>,
    },
    /// `update_task` arguments that put the fields back.
    Updated {
        task: Item,
        before: Value,
    },
}

/// The engine's memory, stored as JSON with each assistant message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<Item>,
    /// The task last acted on ("it", "that").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<Item>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
}

impl State {
    /// From the newest assistant message that has a state; a state that does not parse (an
    /// older format) counts as none.
    pub fn from_history(history: &[HistoryMessage]) -> State {
        history
            .iter()
            .rev()
            .find(|m| m.role == Role::Assistant && m.state.is_some())
            .and_then(|m| m.state.clone())
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default()
    }

    fn to_value(&self) -> Option<Value> {
        serde_json::to_value(self).ok()
    }
}

pub const HELP: &str = "I can manage your tasks. Try:\n\
• “add buy milk tomorrow at 5pm, high priority #groceries” or “remind me to call mom on friday”\n\
• “show my tasks”, “what's left for today?”, “show my high priority tasks”, “show completed tasks”\n\
• “mark the second one done”, “I finished the report”, “reopen buy milk”\n\
• “rename buy milk to buy oat milk”, “move the dentist to next monday”, “make the report high priority”\n\
• “delete the last one”, “delete all completed tasks”, “search milk”, and “undo” for the last change.";

/// One turn: parse, call the tools, answer from their results.
pub async fn turn(ctx: &Context<'_>, message: &str, tools: &UserTools) -> Reply {
    let clock = Clock::new(ctx.now, ctx.tz);
    let before = State::from_history(ctx.history);
    let mut run = Run { clock, tools, calls: Vec::new(), state: State { pending: None, ..before.clone() } };
    let intent = parse::parse(message, &run.clock);
    let response = match (before.pending, intent) {
        (Some(Pending::Confirm { op, tasks }), Intent::Yes) => run.confirmed(op, tasks).await,
        (Some(Pending::Confirm { .. }), Intent::No) => "OK, I left everything as it was.".into(),
        (Some(Pending::Choose { op, candidates }), Intent::Unknown) => run.chosen(op, candidates, message).await,
        (Some(Pending::Choose { .. }), Intent::No) => "OK, never mind.".into(),
        (_, intent) => run.intent(intent).await,
    };
    Reply { response, tool_calls: run.calls, state: run.state.to_value() }
}

struct Run<'a> {
    clock: Clock,
    tools: &'a UserTools,
    calls: Vec<ToolCall>,
    state: State,
}

/// “title” in curly quotes.
fn q(title: &str) -> String {
    format!("“{title}”")
}

fn error_of(call: &ToolCall) -> String {
    call.result.get("error").and_then(Value::as_str).unwrap_or("unknown error").to_owned()
}

/// The task as stored after a write (the tool's `task`), when it succeeded.
fn stored(call: &ToolCall) -> Option<TaskView> {
    call.result.get("task").and_then(TaskView::from_json)
}

impl Run<'_> {
    async fn call(&mut self, name: &str, args: Value) -> ToolCall {
        let call = self.tools.call(name, args).await;
        self.calls.push(call.clone());
        call
    }

    async fn intent(&mut self, intent: Intent) -> String {
        match intent {
            Intent::Empty => "Say something like “show my tasks” or “add buy milk tomorrow”.".into(),
            Intent::Greeting => {
                "Hi! I can add, list, complete, change and delete your tasks. Try “show my tasks” or “add buy milk \
                 tomorrow at 5pm”, or say “help”."
                    .into()
            }
            Intent::Thanks => "You're welcome!".into(),
            Intent::Help => HELP.into(),
            Intent::Yes => "There's nothing waiting for a yes right now.".into(),
            Intent::No => "OK.".into(),
            Intent::Undo => self.undo().await,
            Intent::Add(t) => self.add(t).await,
            Intent::List(q) => self.list(q).await,
            Intent::Search(text) => self.search(text).await,
            Intent::Act { op, target } => self.act(op, target).await,
            Intent::Rename(options) => self.rename(options).await,
            Intent::NeedMore(question) => question,
            Intent::Unknown => format!("Sorry, I didn't understand that.\n{HELP}"),
        }
    }

    async fn add(&mut self, t: NewTask) -> String {
        let mut args = json!({"title": t.title});
        if let Some(d) = &t.description {
            args["description"] = json!(d);
        }
        if let Some(p) = &t.priority {
            args["priority"] = json!(p);
        }
        if !t.tags.is_empty() {
            args["tags"] = json!(t.tags);
        }
        if let Some(d) = &t.due_at {
            args["due_at"] = json!(d);
        }
        if let Some(r) = &t.remind_at {
            args["remind_at"] = json!(r);
        }
        let call = self.call("add_task", args).await;
        match stored(&call) {
            Some(task) if call.succeeded() => {
                let item = Item::from(&task);
                self.state.focus = Some(item.clone());
                self.state.undo = Some(Undo::Added { tasks: vec![item] });
                format!("Added {}{}.", q(&task.title), self.details(&task))
            }
            _ => format!("I couldn't add {}: {}.", q(&t.title), error_of(&call)),
        }
    }

    /// " — due tomorrow at 5:00 PM, high priority, #groceries" from the stored task.
    fn details(&self, t: &TaskView) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &t.due_at {
            parts.push(format!("due {}", self.clock.describe(d)));
        }
        if t.priority != "medium" {
            parts.push(format!("{} priority", t.priority));
        }
        if !t.tags.is_empty() {
            parts.push(t.tags.iter().map(|g| format!("#{g}")).collect::<Vec<_>>().join(" "));
        }
        if let Some(r) = &t.remind_at {
            parts.push(format!("reminder {}", self.clock.describe(r)));
        }
        if parts.is_empty() { String::new() } else { format!(" — {}", parts.join(", ")) }
    }

    fn line(&self, i: usize, t: &TaskView) -> String {
        let done = if t.completed { " ✓ done" } else { "" };
        format!("{}. {}{}{}", i + 1, t.title, done, self.details(t))
    }

    async fn list(&mut self, lq: ListQuery) -> String {
        let mut args = json!({"status": lq.status, "sort": lq.sort, "limit": 100});
        if let Some(o) = lq.order {
            args["order"] = json!(o);
        }
        if let Some(p) = &lq.priority {
            args["priority"] = json!(p);
        }
        if let Some(t) = &lq.tag {
            args["tag"] = json!(t);
        }
        if let Some(d) = &lq.due_before {
            args["due_before"] = json!(d);
        }
        if let Some(d) = &lq.due_after {
            args["due_after"] = json!(d);
        }
        if lq.overdue {
            args["overdue"] = json!(true);
        }
        let call = self.call("list_tasks", args).await;
        let more = call.result.get("has_more").and_then(Value::as_bool).unwrap_or(false);
        match refs::tasks_of(&call) {
            Err(e) => format!("I couldn't list your tasks: {e}."),
            Ok(tasks) => self.show(&tasks, &lq.label, more),
        }
    }

    async fn search(&mut self, text: String) -> String {
        let call = self.call("search_tasks", json!({"query": text})).await;
        let more = call.result.get("has_more").and_then(Value::as_bool).unwrap_or(false);
        match refs::tasks_of(&call) {
            Err(e) => format!("I couldn't search your tasks: {e}."),
            Ok(tasks) => self.show(&tasks, &format!("tasks matching {}", q(&text)), more),
        }
    }

    /// A numbered list; it becomes the list that positions refer to.
    fn show(&mut self, tasks: &[TaskView], label: &str, more: bool) -> String {
        self.state.list = tasks.iter().map(Item::from).collect();
        if tasks.is_empty() {
            return format!("You have no {label}.");
        }
        let lines: Vec<String> = tasks.iter().enumerate().map(|(i, t)| self.line(i, t)).collect();
        let n = tasks.len();
        let more = if more { "\n(There are more; narrow it down to see them.)" } else { "" };
        format!("Your {label} ({n}):\n{}{more}", lines.join("\n"))
    }

    fn memory(&self) -> (Vec<Item>, Option<Item>) {
        (self.state.list.clone(), self.state.focus.clone())
    }

    async fn act(&mut self, op: Op, target: Target) -> String {
        let prefer = match op {
            Op::Complete => Some(false),
            Op::Reopen => Some(true),
            _ => None,
        };
        let (list, focus) = self.memory();
        let mem = Memory { list: &list, focus: focus.as_ref() };
        let resolution = refs::resolve(&target, &mem, prefer, self.tools, &mut self.calls).await;
        match resolution {
            Resolution::Missing(why) => why,
            Resolution::Ambiguous(candidates) => self.ask_which(op, &candidates),
            Resolution::Found(tasks) => {
                if matches!(op, Op::Delete) && tasks.len() > 1 {
                    let items: Vec<Item> = tasks.iter().map(Item::from).collect();
                    let names = items.iter().map(|i| q(&i.title)).collect::<Vec<_>>().join(", ");
                    let n = items.len();
                    self.state.pending = Some(Pending::Confirm { op, tasks: items });
                    return format!("That will delete {n} tasks: {names}. Are you sure? (yes/no)");
                }
                self.apply(&op, tasks).await
            }
        }
    }

    fn ask_which(&mut self, op: Op, candidates: &[TaskView]) -> String {
        let items: Vec<Item> = candidates.iter().map(Item::from).collect();
        let lines: Vec<String> = candidates.iter().enumerate().map(|(i, t)| self.line(i, t)).collect();
        self.state.list = items.clone();
        self.state.pending = Some(Pending::Choose { op, candidates: items });
        format!("Which one do you mean?\n{}\n(Answer with a number, or “no” to cancel.)", lines.join("\n"))
    }

    /// After "which one?": a number or a part of one candidate's title.
    async fn chosen(&mut self, op: Op, candidates: Vec<Item>, message: &str) -> String {
        let toks = parse::tokenize(message);
        let refs: Vec<&parse::Tok> = toks.iter().collect();
        let pick = match parse::target(&refs) {
            Some(Target::Positions(p)) if p.len() == 1 => candidates.get(p[0] - 1).cloned(),
            Some(Target::Last) => candidates.last().cloned(),
            Some(Target::Text(t)) => {
                let views: Vec<TaskView> = candidates
                    .iter()
                    .map(|i| TaskView {
                        task_id: i.id.clone(),
                        title: i.title.clone(),
                        description: None,
                        completed: false,
                        priority: String::new(),
                        tags: vec![],
                        due_at: None,
                        remind_at: None,
                    })
                    .collect();
                match refs::best_matches(&t, &views).as_slice() {
                    [one] => candidates.iter().find(|c| c.id == one.task_id).cloned(),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(item) = pick else {
            return format!("Sorry, I didn't understand that.\n{HELP}");
        };
        let mem = Memory { list: &[], focus: None };
        match refs::resolve(&Target::Id(item.id.clone()), &mem, None, self.tools, &mut self.calls).await {
            Resolution::Found(tasks) => self.apply(&op, tasks).await,
            Resolution::Missing(_) | Resolution::Ambiguous(_) => {
                format!("{} no longer exists (it may have been deleted).", q(&item.title))
            }
        }
    }

    async fn confirmed(&mut self, op: Op, items: Vec<Item>) -> String {
        // Re-read each task: one deleted meanwhile is reported, the others still go.
        let mut tasks = Vec::new();
        let mut gone = Vec::new();
        for item in &items {
            match self.tools.get_task(&item.id).await {
                Ok(t) => tasks.push(t),
                Err(e) => gone.push(format!("I couldn't {} {}: {e}.", verb_of(&op), q(&item.title))),
            }
        }
        let mut out = self.apply(&op, tasks).await;
        for g in gone {
            out.push('\n');
            out.push_str(&g);
        }
        out
    }

    /// Runs `op` on each task and reports each result.
    async fn apply(&mut self, op: &Op, tasks: Vec<TaskView>) -> String {
        let mut lines = Vec::new();
        let mut done_items = Vec::new();
        let mut was = Vec::new();
        let mut deleted = Vec::new();
        let mut updated: Option<(Item, Value)> = None;
        for task in &tasks {
            match op {
                Op::Complete | Op::Reopen => {
                    let want = matches!(op, Op::Complete);
                    if task.completed == want {
                        lines.push(if want {
                            format!("{} is already done.", q(&task.title))
                        } else {
                            format!("{} isn't done yet, so there's nothing to reopen.", q(&task.title))
                        });
                        continue;
                    }
                    let call = self.call("complete_task", json!({"task_id": task.task_id, "completed": want})).await;
                    if call.succeeded() {
                        lines.push(if want {
                            format!("Marked {} as done.", q(&task.title))
                        } else {
                            format!("Reopened {}.", q(&task.title))
                        });
                        done_items.push(Item::from(task));
                        was.push(task.completed);
                    } else {
                        lines.push(format!("I couldn't {} {}: {}.", verb_of(op), q(&task.title), error_of(&call)));
                    }
                }
                Op::Delete => {
                    let call = self.call("delete_task", json!({"task_id": task.task_id})).await;
                    if call.succeeded() {
                        lines.push(format!("Deleted {}.", q(&task.title)));
                        deleted.push(stored(&call).unwrap_or_else(|| task.clone()).to_json());
                    } else {
                        lines.push(format!("I couldn't delete {}: {}.", q(&task.title), error_of(&call)));
                    }
                }
                Op::Update { change } => {
                    let (args, before) = update_args(task, change);
                    let call = self.call("update_task", args).await;
                    match stored(&call) {
                        Some(now) if call.succeeded() => {
                            lines.push(self.describe_update(task, &now, change));
                            updated = Some((Item::from(&now), before));
                        }
                        _ => lines.push(format!("I couldn't update {}: {}.", q(&task.title), error_of(&call))),
                    }
                }
            }
        }
        // Undo reverts this turn's successful changes; a turn that changed nothing keeps the older undo.
        if !done_items.is_empty() {
            self.state.undo = Some(Undo::Completed { tasks: done_items.clone(), was });
        } else if !deleted.is_empty() {
            self.state.undo = Some(Undo::Deleted { tasks: deleted });
        } else if let Some((task, before)) = updated.clone() {
            self.state.undo = Some(Undo::Updated { task, before });
        }
        if let [one] = tasks.as_slice() {
            let focus = updated.map(|(i, _)| i).unwrap_or_else(|| Item::from(one));
            self.state.focus = Some(focus);
        }
        if matches!(op, Op::Delete) {
            // Deleted tasks leave the remembered list and focus, so positions still mean what was shown.
            let gone: Vec<String> = tasks.iter().map(|t| t.task_id.clone()).collect();
            if self.state.focus.as_ref().is_some_and(|f| gone.contains(&f.id)) {
                self.state.focus = None;
            }
        }
        lines.join("\n")
    }

    fn describe_update(&self, before: &TaskView, now: &TaskView, change: &Change) -> String {
        let mut parts = Vec::new();
        if change.title.is_some() {
            return format!("Renamed {} to {}.", q(&before.title), q(&now.title));
        }
        if change.priority.is_some() {
            parts.push(format!("is now {} priority", now.priority));
        }
        match (&change.due, &now.due_at) {
            (DueChange::Set(_), Some(d)) => parts.push(format!("is now due {}", self.clock.describe(d))),
            (DueChange::Clear, None) => parts.push("no longer has a due date".into()),
            _ => {}
        }
        if !change.add_tags.is_empty() {
            let tags = now.tags.iter().map(|g| format!("#{g}")).collect::<Vec<_>>().join(" ");
            parts.push(format!("is tagged {tags}"));
        }
        if change.description.is_some() {
            parts.push("has a new description".into());
        }
        if parts.is_empty() {
            format!("Updated {}.", q(&now.title))
        } else {
            format!("{} {}.", q(&now.title), parts.join(" and "))
        }
    }

    /// "rename X to Y": the first split whose X names exactly one task; else the first split's
    /// answer (ambiguous or not found).
    async fn rename(&mut self, mut options: Vec<(Target, String)>) -> String {
        let (list, focus) = self.memory();
        // A split whose left side is a whole title wins ("rename go to gym to go to pool").
        if options.len() > 1
            && let Ok(all) = refs::list(self.tools, "all", &mut self.calls).await
        {
            let whole = |t: &Target| match t {
                Target::Text(s) => all.iter().any(|task| refs::normalize(&task.title) == refs::normalize(s)),
                _ => false,
            };
            if let Some(i) = options.iter().position(|(t, _)| whole(t)) {
                let best = options.remove(i);
                options.insert(0, best);
            }
        }
        let mut first: Option<(Resolution, String)> = None;
        for (target, title) in options {
            let mem = Memory { list: &list, focus: focus.as_ref() };
            let r = refs::resolve(&target, &mem, None, self.tools, &mut self.calls).await;
            if let Resolution::Found(tasks) = &r
                && tasks.len() == 1
            {
                let op = Op::Update { change: Change { title: Some(title), ..Change::default() } };
                return self.apply(&op, tasks.clone()).await;
            }
            if first.is_none() {
                first = Some((r, title));
            }
        }
        match first {
            Some((Resolution::Ambiguous(c), title)) => {
                self.ask_which(Op::Update { change: Change { title: Some(title), ..Change::default() } }, &c)
            }
            Some((Resolution::Missing(why), _)) => why,
            _ => "Rename which task to what? For example “rename buy milk to buy oat milk”.".into(),
        }
    }

    async fn undo(&mut self) -> String {
        let Some(undo) = self.state.undo.take() else {
            return "There's nothing to undo.".into();
        };
        let mut lines = Vec::new();
        match undo {
            Undo::Added { tasks } => {
                for item in tasks {
                    let call = self.call("delete_task", json!({"task_id": item.id})).await;
                    if call.succeeded() {
                        lines.push(format!("Undone: removed {} again.", q(&item.title)));
                        if self.state.focus.as_ref().is_some_and(|f| f.id == item.id) {
                            self.state.focus = None;
                        }
                    } else {
                        lines.push(format!("I couldn't undo adding {}: {}.", q(&item.title), error_of(&call)));
                    }
                }
            }
            Undo::Completed { tasks, was } => {
                for (item, was) in tasks.iter().zip(was) {
                    let call = self.call("complete_task", json!({"task_id": item.id, "completed": was})).await;
                    if call.succeeded() {
                        lines.push(if was {
                            format!("Undone: {} is done again.", q(&item.title))
                        } else {
                            format!("Undone: {} is open again.", q(&item.title))
                        });
                    } else {
                        lines.push(format!("I couldn't undo the change to {}: {}.", q(&item.title), error_of(&call)));
                    }
                }
            }
            Undo::Deleted { tasks } => {
                for v in tasks {
                    let Some(t) = TaskView::from_json(&v) else { continue };
                    let mut args = json!({"title": t.title, "priority": t.priority, "tags": t.tags});
                    for (k, val) in
                        [("description", &t.description), ("due_at", &t.due_at), ("remind_at", &t.remind_at)]
                    {
                        if let Some(x) = val {
                            args[k] = json!(x);
                        }
                    }
                    let call = self.call("add_task", args).await;
                    let restored = stored(&call).filter(|_| call.succeeded());
                    if let Some(new) = restored {
                        lines.push(format!("Undone: restored {}.", q(&new.title)));
                        if t.completed {
                            // Restore the completion too (creating always makes an open task).
                            let c =
                                self.call("complete_task", json!({"task_id": new.task_id, "completed": true})).await;
                            if !c.succeeded() {
                                lines.push(format!("…but I couldn't mark it done again: {}.", error_of(&c)));
                            }
                        }
                        self.state.focus = Some(Item::from(&new));
                    } else {
                        lines.push(format!("I couldn't restore {}: {}.", q(&t.title), error_of(&call)));
                    }
                }
            }
            Undo::Updated { task, before } => {
                let call = self.call("update_task", before).await;
                match stored(&call) {
                    Some(now) if call.succeeded() => {
                        lines.push(format!("Undone: {} is back to how it was.", q(&now.title)));
                        self.state.focus = Some(Item::from(&now));
                    }
                    _ => lines.push(format!("I couldn't undo the change to {}: {}.", q(&task.title), error_of(&call))),
                }
            }
        }
        lines.join("\n")
    }
}

fn verb_of(op: &Op) -> &'static str {
    match op {
        Op::Complete => "complete",
        Op::Reopen => "reopen",
        Op::Delete => "delete",
        Op::Update { .. } => "update",
    }
}

/// `update_task` arguments for `change`, and the arguments that would put the task back.
fn update_args(task: &TaskView, change: &Change) -> (Value, Value) {
    let mut args = json!({"task_id": task.task_id});
    let mut before = json!({"task_id": task.task_id});
    if let Some(t) = &change.title {
        args["title"] = json!(t);
        before["title"] = json!(task.title);
    }
    if let Some(p) = &change.priority {
        args["priority"] = json!(p);
        before["priority"] = json!(task.priority);
    }
    match &change.due {
        DueChange::Keep => {}
        DueChange::Clear => {
            args["due_at"] = Value::Null;
            before["due_at"] = json!(task.due_at);
        }
        DueChange::Set(d) => {
            args["due_at"] = json!(d);
            before["due_at"] = json!(task.due_at);
            // A reminder after the new due date would be refused: move it with the task.
            if let Some(r) = &task.remind_at
                && r.parse::<jiff::Timestamp>().ok() > d.parse::<jiff::Timestamp>().ok()
            {
                args["remind_at"] = json!(d);
                before["remind_at"] = json!(r);
            }
        }
    }
    if !change.add_tags.is_empty() {
        let mut tags = task.tags.clone();
        for t in &change.add_tags {
            let t = t.to_lowercase();
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        args["tags"] = json!(tags);
        before["tags"] = json!(task.tags);
    }
    if let Some(d) = &change.description {
        args["description"] = json!(d);
        before["description"] = json!(task.description);
    }
    (args, before)
}
