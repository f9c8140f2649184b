//! Turning runs into answers: verdicts, the judge that check, bisect and
//! matrix share, reports and plots, the matrix and bisection.

pub(crate) mod bisect;
pub(crate) mod bisect_git;
pub(crate) mod bisect_state;
pub(crate) mod check;
pub(crate) mod extrapolate;
pub(crate) mod judged;
pub(crate) mod junit;
pub(crate) mod matrix;
pub(crate) mod plot;
pub(crate) mod report;
pub(crate) mod report_files;
pub(crate) mod report_md;
pub(crate) mod report_run;
pub(crate) mod suite;
pub(crate) mod verdict;
