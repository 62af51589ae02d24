//! Collects what a test finds and prints it at the end: leaks and wrong
//! results fail the test (unless listed as known issues); refusals of
//! legitimate SQL are listed, not failed.

use std::collections::BTreeMap;

/// A problem that is known and described in the test file: when a failure's
/// text contains `pattern` it is printed under KNOWN ISSUES and does not
/// fail the test. Leaks are never excused.
pub struct KnownIssue {
    /// Identifies the failure (a substring of its report text).
    pub pattern: &'static str,
    /// What is wrong.
    pub why: &'static str,
}

/// What a test found.
#[derive(Default)]
pub struct Report {
    /// Statement executions compared with the oracle.
    pub compared: usize,
    /// Executions where tenantgate refused what Postgres ran.
    pub refused_count: usize,
    /// Leaks and wrong results.
    pub failures: Vec<String>,
    /// Failures matched by a known issue.
    pub known: Vec<String>,
    /// Refusals of statements Postgres accepts: statement → protocols/sources and error.
    pub refusals: BTreeMap<String, Vec<String>>,
    /// Other observations (printed, never failing).
    pub notes: Vec<String>,
}

impl Report {
    /// Records a leak or wrong result.
    pub fn fail(&mut self, known: &[KnownIssue], text: String) {
        // A leak is never excused by a known issue.
        let leak = text.starts_with("LEAK");
        if let Some(k) = known.iter().find(|k| !leak && text.contains(k.pattern)) {
            self.known.push(format!("[known issue: {}]\n{text}", k.why));
        } else {
            self.failures.push(text);
        }
    }

    /// Records a refusal of a statement Postgres accepts.
    pub fn refusal(&mut self, statement: &str, context: String) {
        self.refused_count += 1;
        self.refusals
            .entry(one_line(statement))
            .or_default()
            .push(context);
    }

    /// Records an observation.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// Prints everything; panics when there are failures.
    pub fn finish(self, title: &str) {
        println!("\n===== {title} =====");
        println!("compared executions: {}", self.compared);
        println!(
            "refused by tenantgate although Postgres accepts them: {} executions of {} statements",
            self.refused_count,
            self.refusals.len()
        );
        for (stmt, contexts) in &self.refusals {
            println!("  REFUSED: {stmt}");
            let mut seen: Vec<&String> = Vec::new();
            for c in contexts {
                if !seen.contains(&c) {
                    seen.push(c);
                }
            }
            for c in seen.iter().take(3) {
                println!("      {c}");
            }
        }
        for n in &self.notes {
            println!("NOTE: {n}");
        }
        for k in &self.known {
            println!("KNOWN ISSUE (not failing the test):\n{k}\n");
        }
        if !self.failures.is_empty() {
            for f in &self.failures {
                println!("FAILURE:\n{f}\n");
            }
            panic!(
                "{title}: {} failure(s) (leaks or wrong results), listed above",
                self.failures.len()
            );
        }
    }
}

/// The statement on one line, shortened.
pub fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 240 {
        let cut: String = flat.chars().take(240).collect();
        format!("{cut} …")
    } else {
        flat
    }
}
