//! Limits: named, farm-wide counters of tokens (`tessera limit set blender-license 10`;
//! `limits = ["blender-license"]` in a job). A task of such a job holds a token of each of
//! its job's limits from the moment it is queued until it ends, so never more tasks than
//! tokens run at once; tasks waiting for a token are held in the ledger, not in the queue,
//! so they hold no worker's slot. A token belongs to its task, not to a worker: a worker
//! that dies hands its task (and the token with it) to the next.
//!
//! Tokens go to the jobs that asked in turn: a job refused one joins the end of the
//! waiting line, and a free token goes only to the job at its head, which then moves to
//! the back if it still wants more. Pure: the limit record is changed under
//! compare-and-swap, so any number of collectors and clients may take and give back
//! tokens at once.

use serde::{Deserialize, Serialize};

/// The most tokens a limit may have.
pub const MAX_TOKENS: u32 = 100_000;

/// The most limits one job may name.
pub const MAX_JOB_LIMITS: usize = 8;

/// One limit's record (KV key `<name>` in `tessera-limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// How many tokens there are.
    pub max: u32,
    /// The tasks holding one.
    pub holders: Vec<Holder>,
    /// Jobs refused a token, in the order they asked.
    pub waiting: Vec<String>,
}

/// A task that holds a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Its job.
    pub job: String,
    /// The job's incarnation (a job deleted and submitted again holds none of its
    /// predecessor's tokens).
    pub incarnation: String,
    /// The task's index.
    pub task: u32,
}

impl Limit {
    /// Tokens in use.
    pub fn in_use(&self) -> u32 {
        self.holders.len() as u32
    }

    /// Whether task `task` of `job` holds a token.
    pub fn holds(&self, job: &str, incarnation: &str, task: u32) -> bool {
        self.holders
            .iter()
            .any(|h| h.job == job && h.incarnation == incarnation && h.task == task)
    }

    /// Gives tokens to as many of `tasks` of `job` as may have one; returns those that
    /// hold one now (a task that held one already keeps it). A job refused some joins the
    /// waiting line; one served in full leaves it.
    pub fn take(&mut self, job: &str, incarnation: &str, tasks: &[u32]) -> Vec<u32> {
        if tasks.is_empty() {
            return Vec::new();
        }
        let first_in_line = self.waiting.first().is_none_or(|w| w == job);
        let mut holding = Vec::with_capacity(tasks.len());
        let mut new = 0;
        for &task in tasks {
            if self.holds(job, incarnation, task) {
                holding.push(task);
            } else if first_in_line && self.in_use() < self.max {
                self.holders.push(Holder {
                    job: job.to_string(),
                    incarnation: incarnation.to_string(),
                    task,
                });
                holding.push(task);
                new += 1;
            }
        }
        let in_line = self.waiting.iter().position(|w| w == job);
        match (holding.len() == tasks.len(), in_line) {
            (true, Some(at)) => {
                self.waiting.remove(at);
            }
            (true, None) => {}
            // Served in part from the head of the line: to the back, the next one's turn.
            (false, Some(0)) if new > 0 => {
                let job = self.waiting.remove(0);
                self.waiting.push(job);
            }
            (false, Some(_)) => {}
            (false, None) => self.waiting.push(job.to_string()),
        }
        holding
    }

    /// Takes back the tokens of `tasks` of `job` (every one of the job's, and its place in
    /// line, when `None`: the job ended); returns how many.
    pub fn give_back(&mut self, job: &str, incarnation: &str, tasks: Option<&[u32]>) -> usize {
        let before = self.holders.len();
        self.holders.retain(|h| {
            h.job != job
                || h.incarnation != incarnation
                || tasks.is_some_and(|tasks| !tasks.contains(&h.task))
        });
        if tasks.is_none() {
            self.waiting.retain(|w| w != job);
        }
        before - self.holders.len()
    }

    /// The job whose turn it is to take a free token, if a token is free and one waits.
    pub fn next_in_line(&self) -> Option<&str> {
        (self.in_use() < self.max)
            .then(|| self.waiting.first().map(String::as_str))
            .flatten()
    }
}

/// Checks a limit's name (`[a-z0-9][a-z0-9_-]{0,63}`, like a job id).
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
    match first_ok && rest_ok && name.len() <= 64 {
        true => Ok(()),
        false => Err(format!(
            "{name:?} is not a limit name: lower-case letters, digits, - and _, starting with a letter or digit, at most 64"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_in_turn_and_never_past_the_max() {
        let mut limit = Limit {
            max: 2,
            ..Limit::default()
        };
        /// (job, tasks asked) -> tasks holding, tokens in use, the line after.
        type Step<'a> = (&'a str, &'a [u32], &'a [u32], u32, &'a [&'a str]);
        let steps: [Step; 7] = [
            ("a", &[0, 1, 2], &[0, 1], 2, &["a"]),
            ("b", &[0], &[], 2, &["a", "b"]),
            // Asked again, a holder keeps its token; still none free.
            ("a", &[1, 2], &[1], 2, &["a", "b"]),
            ("b", &[0], &[], 2, &["a", "b"]),
            ("c", &[5], &[], 2, &["a", "b", "c"]),
            ("a", &[], &[], 2, &["a", "b", "c"]),
            ("b", &[0], &[], 2, &["a", "b", "c"]),
        ];
        for (job, asked, holding, in_use, line) in steps {
            assert_eq!(limit.take(job, "i", asked), holding, "{job} {asked:?}");
            assert_eq!(limit.in_use(), in_use, "{job} {asked:?}");
            assert_eq!(limit.waiting, line, "{job} {asked:?}");
        }
        // A's task 0 ends: the free token is b's, at the head once a moves on.
        assert_eq!(limit.give_back("a", "i", Some(&[0])), 1);
        assert_eq!(limit.next_in_line(), Some("a"));
        assert_eq!(
            limit.take("b", "i", &[0]),
            Vec::<u32>::new(),
            "not b's turn"
        );
        assert_eq!(limit.take("a", "i", &[2, 3]), [2]);
        assert_eq!(
            limit.waiting,
            ["b", "c", "a"],
            "a served in part goes to the back"
        );
        assert_eq!(limit.give_back("a", "i", None), 2);
        assert_eq!(limit.waiting, ["b", "c"], "an ended job leaves the line");
        assert_eq!(limit.next_in_line(), Some("b"));
        assert_eq!(limit.take("b", "i", &[0]), [0]);
        assert_eq!(limit.waiting, ["c"]);
        assert_eq!(limit.take("c", "i", &[5]), [5]);
        assert!(limit.waiting.is_empty());
        assert_eq!(limit.in_use(), 2);
        // Another incarnation of b holds nothing of the old one's.
        assert!(!limit.holds("b", "j", 0));
        assert_eq!(limit.give_back("b", "j", None), 0);
    }

    #[test]
    fn names_are_checked() {
        for good in ["blender-license", "a", "nuke_10"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "Blender", "a.b", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
