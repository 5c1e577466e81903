//! `after = ["<job id>", …]`: the jobs that must be done before a job is queued, and
//! `after_frames = "<job id>"`: the job whose frame N each frame N waits for; and their
//! checks. A job may name one that does not exist yet: it waits for it.

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

/// Checks `after_frames` for job `id`, which runs after the jobs `after`: a job id, not
/// the job itself nor one of `after` (that one holds the whole job already).
pub fn validate_frames(
    text: Option<&str>,
    id: Option<&JobId>,
    after: &[JobId],
    errors: &mut Problems,
) -> Option<JobId> {
    let text = text?;
    match JobId::parse(text) {
        Err(e) => errors.add("after_frames", format!("{text:?} is not a job id: {e}")),
        Ok(job) if Some(&job) == id => errors.add("after_frames", "a job cannot run after itself"),
        Ok(job) if after.contains(&job) => errors.add(
            "after_frames",
            format!("{job} is in `after` too, which holds the whole job until it is done; name it in one of them"),
        ),
        Ok(job) => return Some(job),
    }
    None
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

    #[test]
    fn after_frames_names_one_other_job() {
        let me = JobId::parse("comp").unwrap();
        let after = [JobId::parse("sim").unwrap()];
        // (after_frames, whether it is accepted)
        let cases = [
            (None, true),
            (Some("render"), true),
            (Some("comp"), false),
            (Some("sim"), false),
            (Some("Bad/Id"), false),
        ];
        for (text, ok) in cases {
            let mut errors = Problems::default();
            let job = validate_frames(text, Some(&me), &after, &mut errors);
            let errors = errors.into_vec();
            assert_eq!(errors.is_empty(), ok, "{text:?}: {errors:?}");
            assert_eq!(job.map(|j| j.to_string()).as_deref(), text.filter(|_| ok));
            if !ok {
                assert_eq!(errors[0].field, "after_frames");
            }
        }
    }
}
