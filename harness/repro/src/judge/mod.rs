//! Turning runs into answers: verdicts, the judge that check, bisect and
//! matrix share, reports and plots, the matrix and bisection.

pub mod bisect;
pub mod bisect_state;
pub mod extrapolate;
pub mod judged;
pub mod matrix;
pub mod plot;
pub mod report;
pub mod report_files;
pub mod verdict;
