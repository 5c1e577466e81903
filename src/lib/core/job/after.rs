//! `after = ["<job id>", …]`: the jobs that must be done before a job is queued, and
//! their check. A job may name one that does not exist yet: it waits for it.

use super::vocab::JobId;
use crate::core::problem::Problems;

/// The most jobs one job may run after.
pub const MAX_AFTER: usize = 64;

/// Checks `after` for job `id`: job ids, none twice, not the job itself, at most
/// [`MAX_AFTER`]; every problem goes to `errors`, naming its place.
pub fn validate(after: &[String], id: Option<&JobId>, errors: &mut Problems) -> Vec<JobId> {
    if after.len() > MAX_AFTER {
        errors.add(
            "after",
            format!("names {} jobs; at most {MAX_AFTER}", after.len()),
        );
    }
    let mut jobs: Vec<JobId> = Vec::new();
    for (i, text) in after.iter().enumerate() {
        let field = format!("after[{i}]");
        match JobId::parse(text) {
            Err(e) => errors.add(field, format!("{text:?} is not a job id: {e}")),
            Ok(job) if Some(&job) == id => errors.add(field, "a job cannot run after itself"),
            Ok(job) if jobs.contains(&job) => errors.add(field, format!("{job} is named twice")),
            Ok(job) => jobs.push(job),
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_names_other_jobs_once_each() {
        let me = JobId::parse("comp").unwrap();
        // (after, the jobs, or the field of the problem)
        type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], &'a str>);
        let cases: [Case; 5] = [
            (&[], Ok(&[])),
            (&["sim", "render"], Ok(&["sim", "render"])),
            (&["sim", "sim"], Err("after[1]")),
            (&["comp"], Err("after[0]")),
            (&["Bad/Id"], Err("after[0]")),
        ];
        for (after, expected) in cases {
            let after: Vec<String> = after.iter().map(|s| s.to_string()).collect();
            let mut errors = Problems::default();
            let jobs = validate(&after, Some(&me), &mut errors);
            let errors = errors.into_vec();
            match expected {
                Ok(names) => {
                    assert!(errors.is_empty(), "{after:?}: {errors:?}");
                    let got: Vec<&str> = jobs.iter().map(JobId::as_str).collect();
                    assert_eq!(got, names);
                }
                Err(field) => assert_eq!(errors[0].field, field, "{after:?}"),
            }
        }
        let many: Vec<String> = (0..=MAX_AFTER).map(|i| format!("j{i}")).collect();
        let mut errors = Problems::default();
        validate(&many, Some(&me), &mut errors);
        assert_eq!(errors.into_vec()[0].field, "after");
    }
}
