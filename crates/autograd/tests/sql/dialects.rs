//! `differentiate_sql` for other engines: what each spells differently, what
//! each has no spelling for, and the table of reference derivatives that the
//! Python tests run in DuckDB, PostgreSQL and SQLite.
//!
//! The engines themselves run in the Python tests (`tests/test_dialects.py`);
//! here every derivative of the rule cases must at least parse in its
//! engine's grammar as sqlparser knows it.

use std::fmt::Write;
use std::path::PathBuf;

use datafusion_autograd::{differentiate_sql, Dialect};
use datafusion_sql::sqlparser::dialect::{
    Dialect as Grammar, DuckDbDialect, GenericDialect, PostgreSqlDialect, SQLiteDialect,
};
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::Token;

use crate::common::Rng;
use crate::rules::cases;

/// Sample points per rule case in the reference table.
const POINTS: usize = 12;

/// The table the Python tests read: every rule case with sample points and
/// the analytic derivative there, computed by the case's Rust reference.
const REFERENCE_TABLE: &str = "tests/reference_derivatives.json";

/// Set to rewrite the reference table after the rule cases changed.
const BLESS: &str = "DATAFUSION_AUTOGRAD_BLESS";

fn grammar(dialect: Dialect) -> Box<dyn Grammar> {
    match dialect {
        Dialect::DataFusion => Box::new(GenericDialect {}),
        Dialect::DuckDb => Box::new(DuckDbDialect {}),
        Dialect::PostgreSql => Box::new(PostgreSqlDialect {}),
        Dialect::Sqlite => Box::new(SQLiteDialect {}),
        other => panic!("no grammar for {other}"),
    }
}

/// Whether `sql` is exactly one expression in `dialect`'s grammar.
fn parses(sql: &str, dialect: Dialect) -> Result<(), String> {
    let grammar = grammar(dialect);
    let mut parser = Parser::new(grammar.as_ref())
        .try_with_sql(sql)
        .map_err(|e| e.to_string())?;
    parser.parse_expr().map_err(|e| e.to_string())?;
    match parser.next_token().token {
        Token::EOF => Ok(()),
        extra => Err(format!("`{extra}` after the expression")),
    }
}

fn json_string(text: &str) -> String {
    let mut quoted = String::from('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => write!(quoted, "\\u{:04x}", c as u32).unwrap(),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn json_numbers(values: &[f64]) -> String {
    assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
    // `{:?}` prints the shortest text that reads back as the same double.
    let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// The reference table as JSON text, the same on every run.
fn reference_table() -> String {
    let mut rng = Rng::new(2024);
    let mut rows = vec![];
    for case in cases() {
        let xs: Vec<f64> = (0..POINTS)
            .map(|_| rng.uniform(case.x.0, case.x.1))
            .collect();
        let ys: Vec<f64> = (0..POINTS)
            .map(|_| rng.uniform(case.y.0, case.y.1))
            .collect();
        let ds: Vec<f64> = xs.iter().zip(&ys).map(|(&x, &y)| (case.d)(x, y)).collect();
        rows.push(format!(
            "    {{\"primitive\": {}, \"f\": {}, \"wrt\": {},\n     \"x\": {},\n     \"y\": {},\n     \"d\": {}}}",
            json_string(case.primitive),
            json_string(case.f),
            json_string(case.wrt),
            json_numbers(&xs),
            json_numbers(&ys),
            json_numbers(&ds),
        ));
    }
    format!(
        "{{\n  \"about\": {},\n  \"cases\": [\n{}\n  ]\n}}\n",
        json_string(&format!(
            "Written by crates/autograd/tests/sql/dialects.rs from the rule cases in rules.rs: \
             each case's derivative at {POINTS} points, by its analytic reference. \
             Rewrite with {BLESS}=1 cargo test -p datafusion-autograd --test sql reference_table"
        )),
        rows.join(",\n")
    )
}

#[test]
fn reference_table_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(REFERENCE_TABLE);
    let table = reference_table();
    if std::env::var_os(BLESS).is_some() {
        std::fs::write(&path, &table).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == table,
        "{REFERENCE_TABLE} does not match the rule cases; rewrite it with \
         {BLESS}=1 cargo test -p datafusion-autograd --test sql reference_table"
    );
}

#[test]
fn every_rule_case_is_written_for_every_engine() {
    for case in cases() {
        for dialect in Dialect::ALL {
            let sql = differentiate_sql(case.f, case.wrt, dialect)
                .unwrap_or_else(|e| panic!("{dialect}: d/d{} {}: {e}", case.wrt, case.f));
            parses(&sql, dialect)
                .unwrap_or_else(|e| panic!("{dialect}: `{sql}` does not parse: {e}"));
        }
    }
}

#[test]
fn engines_spell_what_datafusion_writes_differently() {
    use Dialect::*;
    let cases: &[(&str, Dialect, &str)] = &[
        ("x * signum(y)", DuckDb, r#"CAST(sign("y") AS DOUBLE)"#),
        ("x * signum(y)", PostgreSql, r#"sign("y")"#),
        ("x * signum(y)", Sqlite, "CAST(sign(`y`) AS DOUBLE)"),
        ("x * nvl(y, 1.0)", Sqlite, "coalesce(`y`, 1.0)"),
        (
            "x * nvl2(y, y, 2.0)",
            PostgreSql,
            r#"CASE WHEN "y" IS NOT NULL THEN "y" ELSE 2.0 END"#,
        ),
        ("x * log2(y)", PostgreSql, r#"ln("y") / ln(2.0)"#),
        ("x * log(3.0, y)", PostgreSql, r#"ln("y") / ln(3.0)"#),
        ("x * log(3.0, y)", DuckDb, r#"log(3.0, "y")"#),
        ("x * cot(y)", Sqlite, "1.0 / tan(`y`)"),
        (
            "x * cbrt(y)",
            Sqlite,
            "CAST(sign(`y`) AS DOUBLE) * power(abs(`y`), 0.3333333333333333)",
        ),
        (
            "x * greatest(y, 1.0)",
            Sqlite,
            "max(coalesce(`y`, 1.0), coalesce(1.0, `y`))",
        ),
        ("x * least(y, 1.0)", PostgreSql, r#"least("y", 1.0)"#),
        ("x * (y % 1.5)", Sqlite, "mod(`y`, 1.5)"),
        ("x * (y % 1.5)", DuckDb, r#""y" % 1.5"#),
        ("x * (7 % 2)", PostgreSql, "7 % 2"),
        // DataFusion divides integers as integers, DuckDB's `/` does not.
        ("x * (7 / 2)", DuckDb, "divide(7, 2)"),
        ("x * (7 / 2)", Sqlite, "7 / 2"),
        ("x / y", DuckDb, r#"1.0 / "y""#),
        // DataFusion's implicit conversions, written out.
        ("x * floor(7) / 2", Sqlite, "floor(7.0) * 0.5"),
        (
            "x * CAST(y AS INT)",
            PostgreSql,
            r#"CAST(trunc("y") AS INTEGER)"#,
        ),
        (
            "x * CAST(y AS INT)",
            DuckDb,
            r#"CAST(trunc("y") AS INTEGER)"#,
        ),
        ("x * CAST(y AS INT)", Sqlite, "CAST(`y` AS INTEGER)"),
        (
            "x * TRY_CAST(y AS DOUBLE)",
            PostgreSql,
            r#"CAST("y" AS DOUBLE PRECISION)"#,
        ),
        (
            "x * TRY_CAST(y AS INT)",
            DuckDb,
            r#"TRY_CAST(trunc("y") AS INTEGER)"#,
        ),
        // Infinities.
        ("x * 1e200 * 1e200", DataFusion, "CAST('inf' AS DOUBLE)"),
        ("x * 1e200 * 1e200", DuckDb, "CAST('inf' AS DOUBLE)"),
        (
            "x * 1e200 * 1e200",
            PostgreSql,
            "CAST('Infinity' AS DOUBLE PRECISION)",
        ),
        ("x * 1e200 * 1e200", Sqlite, "9e999"),
        ("x * -1e200 * 1e200", Sqlite, "-9e999"),
        ("x * CAST('-inf' AS DOUBLE)", Sqlite, "-9e999"),
    ];
    for (f, dialect, expected) in cases {
        let got = differentiate_sql(f, "x", *dialect)
            .unwrap_or_else(|e| panic!("{dialect}: d/dx {f}: {e}"));
        assert_eq!(&got, expected, "{dialect}: d/dx {f}");
        parses(&got, *dialect).unwrap_or_else(|e| panic!("{dialect}: `{got}`: {e}"));
    }
}

#[test]
fn what_an_engine_cannot_spell_is_named() {
    use Dialect::*;
    let cases: &[(&str, Dialect, &str)] = &[
        ("sin(x % y)", PostgreSql, "'%' of non-integer operands"),
        ("x * trunc(y, 1)", Sqlite, "'trunc' with 2 arguments"),
        ("x * trunc(y, 1)", PostgreSql, "'trunc' with 2 arguments"),
        ("x * TRY_CAST(y AS INT)", PostgreSql, "TRY_CAST to Int32"),
        ("x * TRY_CAST(y AS INT)", Sqlite, "TRY_CAST to Int32"),
        ("x * CAST('NaN' AS DOUBLE)", Sqlite, "NaN"),
        ("x * nanvl(y, 1.0)", DuckDb, "'nanvl'"),
        ("x * nanvl(y, 1.0)", Sqlite, "'nanvl'"),
        ("x * random()", PostgreSql, "'random'"),
        (
            "CASE WHEN 'a' LIKE 'b' THEN x ELSE 2 * x END",
            Sqlite,
            "the Like expression",
        ),
    ];
    for (f, dialect, what) in cases {
        let e = differentiate_sql(f, "x", *dialect)
            .expect_err(&format!("{dialect}: d/dx {f} has no spelling"))
            .to_string();
        let expected = format!("{dialect} has no spelling for {what}");
        assert!(
            e.contains(&expected) && e.contains("which the derivative contains"),
            "{dialect}: d/dx {f}: {e}"
        );
    }
    // DataFusion itself writes them all.
    for (f, _, _) in cases {
        differentiate_sql(f, "x", DataFusion).unwrap();
    }
}

#[test]
fn dialects_by_name() {
    for dialect in Dialect::ALL {
        assert_eq!(dialect.name().parse::<Dialect>().unwrap(), dialect);
        assert_eq!(dialect.to_string(), dialect.name());
    }
    assert_eq!(Dialect::default(), Dialect::DataFusion);
    let e = "mysql".parse::<Dialect>().unwrap_err().to_string();
    assert!(
        e.contains(
            "unknown SQL dialect 'mysql'; expected one of datafusion, duckdb, postgresql, sqlite"
        ),
        "{e}"
    );
}
