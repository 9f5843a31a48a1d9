//! Integration tests of spark-predict, one module per topic. Traces are built here or by
//! `spark_predict::synth`; nothing is read from outside the repository.

mod parse;
mod replay;
