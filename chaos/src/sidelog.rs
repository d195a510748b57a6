//! The handlers' side-effect log, read back: one execution per handler
//! process, with its `start` and (if it got that far) `end`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

/// One handler process: what it ran, for which agent, and when.
#[derive(Debug, Clone)]
pub struct Exec {
    pub task: i64,
    pub attempt: i64,
    pub agent: String,
    /// The agent process that started it (an agent incarnation).
    pub agent_pid: u32,
    /// The handler process itself.
    pub pid: u32,
    pub start_us: i64,
    pub end_us: Option<i64>,
}

#[derive(Debug, Default)]
pub struct SideLog {
    pub execs: Vec<Exec>,
    /// Lines that do not parse (a torn write would show here).
    pub bad_lines: usize,
    /// `end` lines with no `start`.
    pub orphan_ends: usize,
}

impl SideLog {
    pub fn read(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut log = SideLog::default();
        // (pid, task) → index into execs.
        let mut open: HashMap<(u32, i64), usize> = HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let parsed = (|| {
                if f.len() != 7 {
                    return None;
                }
                Some((
                    f[0].parse::<i64>().ok()?,
                    f[1].parse::<i64>().ok()?,
                    f[2],
                    f[3].parse::<u32>().ok()?,
                    f[4].parse::<u32>().ok()?,
                    f[5],
                    f[6].parse::<i64>().ok()?,
                ))
            })();
            let Some((task, attempt, agent, agent_pid, pid, what, at)) = parsed else {
                log.bad_lines += 1;
                continue;
            };
            match what {
                "start" => {
                    open.insert((pid, task), log.execs.len());
                    log.execs.push(Exec {
                        task,
                        attempt,
                        agent: agent.to_string(),
                        agent_pid,
                        pid,
                        start_us: at,
                        end_us: None,
                    });
                }
                "end" => match open.remove(&(pid, task)) {
                    Some(i) => log.execs[i].end_us = Some(at),
                    None => log.orphan_ends += 1,
                },
                _ => log.bad_lines += 1,
            }
        }
        log
    }

    /// Executions by task.
    pub fn by_task(&self) -> HashMap<i64, Vec<&Exec>> {
        let mut m: HashMap<i64, Vec<&Exec>> = HashMap::new();
        for e in &self.execs {
            m.entry(e.task).or_default().push(e);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_start_and_end_by_process() {
        let log = SideLog::parse(
            "7 1 a 100 200 start 10\n8 1 a 100 201 start 11\n7 1 a 100 200 end 20\nbroken\n9 1 a 1 2 end 5\n",
        );
        assert_eq!(log.execs.len(), 2);
        assert_eq!(log.execs[0].end_us, Some(20));
        assert_eq!(log.execs[1].end_us, None);
        assert_eq!(log.bad_lines, 1);
        assert_eq!(log.orphan_ends, 1);
    }
}
