//! Importing the supervision item catalogue and the regulated entities from CSV or JSON: every
//! row is checked, and either all are valid (then imported in one transaction) or the answer
//! lists every bad row with its line, field and reason (docs/records.md).

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Industry, ItemCode, RegionCode, RiskGrade, Severity, Uscc};
use serde_json::value::RawValue;

/// One bad value of an import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The line of the file (CSV: the row's line, 1 = the header; JSON: the line where the
    /// element starts).
    pub line: u64,
    pub field: String,
    pub reason: String,
}

/// A catalogue entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub code: ItemCode,
    pub name: String,
    pub departments: Vec<String>,
    pub industry: Industry,
    pub severity: Severity,
    pub claim_within: Option<Duration>,
    pub close_within: Option<Duration>,
}

/// A regulated entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub uscc: Uscc,
    pub name: String,
    pub region: RegionCode,
    pub industry: Industry,
    pub address: String,
    pub risk_grade: RiskGrade,
}

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// By a file name's extension or a Content-Type.
    pub fn guess(name_or_type: &str) -> Option<Self> {
        let s = name_or_type.to_ascii_lowercase();
        if s.ends_with(".csv") || s.starts_with("text/csv") {
            Some(Format::Csv)
        } else if s.ends_with(".json") || s.starts_with("application/json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

pub const ITEM_FIELDS: &[&str] =
    &["code", "name", "departments", "industry", "severity", "claim_within", "close_within"];
const ITEM_REQUIRED: &[&str] = &["code", "name", "departments", "industry", "severity"];
pub const ENTITY_FIELDS: &[&str] = &["uscc", "name", "region", "industry", "address", "risk_grade"];

/// One row's fields by name, with its line.
struct Row {
    line: u64,
    fields: Vec<(String, String)>,
}

impl Row {
    fn get(&self, name: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim())
    }
}

/// Reads the rows: the CSV's header names the fields; JSON is a list of objects.
fn rows(text: &str, format: Format, fields: &[&str], out: &mut Vec<Problem>) -> Vec<Row> {
    let mut rows = Vec::new();
    let unknown = |line: u64, name: &str, out: &mut Vec<Problem>| {
        out.push(Problem {
            line,
            field: name.to_owned(),
            reason: format!("unknown field; expected: {}", fields.join(", ")),
        })
    };
    match format {
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .flexible(false)
                .trim(csv::Trim::All)
                .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
            let header: Vec<String> = match r.headers() {
                Ok(h) => h.iter().map(str::to_owned).collect(),
                Err(e) => {
                    out.push(Problem { line: 1, field: String::new(), reason: e.to_string() });
                    return rows;
                }
            };
            for h in &header {
                if !fields.contains(&h.as_str()) {
                    unknown(1, h, out);
                }
            }
            for rec in r.records() {
                match rec {
                    Ok(rec) => {
                        let line = rec.position().map_or(0, |p| p.line());
                        let fields = header.iter().cloned().zip(rec.iter().map(str::to_owned));
                        rows.push(Row { line, fields: fields.collect() });
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        out.push(Problem { line, field: String::new(), reason: e.to_string() });
                    }
                }
            }
        }
        Format::Json => {
            let list: Vec<&RawValue> = match serde_json::from_str(text) {
                Ok(l) => l,
                Err(e) => {
                    out.push(Problem {
                        line: e.line() as u64,
                        field: String::new(),
                        reason: format!("not a JSON list of objects: {e}"),
                    });
                    return rows;
                }
            };
            for raw in list {
                // The element's text borrows from `text`: its offset gives its line.
                let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
                let line = text[..offset].matches('\n').count() as u64 + 1;
                let obj: serde_json::Map<String, serde_json::Value> =
                    match serde_json::from_str(raw.get()) {
                        Ok(o) => o,
                        Err(_) => {
                            out.push(Problem {
                                line,
                                field: String::new(),
                                reason: "not an object".into(),
                            });
                            continue;
                        }
                    };
                let mut row = Vec::new();
                for (k, v) in obj {
                    if !fields.contains(&k.as_str()) {
                        unknown(line, &k, out);
                    }
                    let s = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::Array(a) => a
                            .iter()
                            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join(";"),
                        other => other.to_string(),
                    };
                    row.push((k, s));
                }
                rows.push(Row { line, fields: row });
            }
        }
    }
    rows
}

/// Checks `row`'s required fields are present and not empty.
fn required(row: &Row, names: &[&str], out: &mut Vec<Problem>) -> bool {
    let mut ok = true;
    for n in names {
        if row.get(n).is_empty() {
            out.push(Problem { line: row.line, field: (*n).into(), reason: "missing".into() });
            ok = false;
        }
    }
    ok
}

fn check<T, E: std::fmt::Display>(
    row: &Row,
    field: &str,
    r: Result<T, E>,
    out: &mut Vec<Problem>,
) -> Option<T> {
    r.map_err(|e| out.push(Problem { line: row.line, field: field.into(), reason: e.to_string() }))
        .ok()
}

/// A present field's value checked by `parse` (a missing one is reported by `required`).
fn given<T, E: std::fmt::Display>(
    row: &Row,
    field: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
    out: &mut Vec<Problem>,
) -> Option<T> {
    let v = row.get(field);
    if v.is_empty() {
        return None;
    }
    check(row, field, parse(v), out)
}

fn duration(row: &Row, field: &str, out: &mut Vec<Problem>) -> Option<Option<Duration>> {
    let v = row.get(field);
    if v.is_empty() {
        return Some(None);
    }
    let d = check(
        row,
        field,
        humantime::parse_duration(v)
            .map_err(|e| format!("{v:?} is not a duration such as 30m, 2h or 3d: {e}")),
        out,
    )?;
    if d.is_zero() {
        out.push(Problem {
            line: row.line,
            field: field.into(),
            reason: "must be longer than 0".into(),
        });
        return None;
    }
    Some(Some(d))
}

/// Parses a catalogue; `departments` are the department ids that exist. Every bad value is
/// reported, and duplicate codes.
pub fn catalogue(
    text: &str,
    format: Format,
    departments: &BTreeSet<String>,
) -> Result<Vec<Item>, Vec<Problem>> {
    let mut out = Vec::new();
    let rows = rows(text, format, ITEM_FIELDS, &mut out);
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    for row in &rows {
        // Every problem of the row is reported: missing fields, and the others' values.
        let complete = required(row, ITEM_REQUIRED, &mut out);
        let code = given(row, "code", ItemCode::new, &mut out);
        if let Some(c) = &code
            && !seen.insert(c.as_str().to_owned())
        {
            out.push(Problem {
                line: row.line,
                field: "code".into(),
                reason: format!("{c} appears more than once in the file"),
            });
        }
        let depts: Vec<String> = row
            .get("departments")
            .split([';', ','])
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect();
        let mut depts_ok = true;
        for d in &depts {
            if !departments.contains(d) {
                depts_ok = false;
                out.push(Problem {
                    line: row.line,
                    field: "departments".into(),
                    reason: format!("no department {d:?} (hub department add, or the admin API)"),
                });
            }
        }
        let industry = given(row, "industry", |v| v.parse::<Industry>(), &mut out);
        let severity = given(row, "severity", |v| v.parse::<Severity>(), &mut out);
        let claim = duration(row, "claim_within", &mut out);
        let close = duration(row, "close_within", &mut out);
        if let (
            true,
            Some(code),
            true,
            Some(industry),
            Some(severity),
            Some(claim_within),
            Some(close_within),
        ) = (complete, code, depts_ok, industry, severity, claim, close)
        {
            items.push(Item {
                code,
                name: row.get("name").to_owned(),
                departments: depts,
                industry,
                severity,
                claim_within,
                close_within,
            });
        }
    }
    if rows.is_empty() && out.is_empty() {
        out.push(Problem { line: 1, field: String::new(), reason: "the file has no rows".into() });
    }
    if out.is_empty() { Ok(items) } else { Err(out) }
}

/// Parses regulated entities; every bad value is reported, and duplicate codes.
pub fn entities(text: &str, format: Format) -> Result<Vec<Entity>, Vec<Problem>> {
    let mut out = Vec::new();
    let rows = rows(text, format, ENTITY_FIELDS, &mut out);
    let mut list = Vec::new();
    let mut seen = BTreeSet::new();
    for row in &rows {
        let complete = required(row, ENTITY_FIELDS, &mut out);
        let uscc = given(row, "uscc", Uscc::new, &mut out);
        if let Some(u) = &uscc
            && !seen.insert(u.as_str().to_owned())
        {
            out.push(Problem {
                line: row.line,
                field: "uscc".into(),
                reason: format!("{u} appears more than once in the file"),
            });
        }
        let region = given(row, "region", RegionCode::new, &mut out);
        let industry = given(row, "industry", |v| v.parse::<Industry>(), &mut out);
        let grade = given(row, "risk_grade", |v| v.parse::<RiskGrade>(), &mut out);
        if let (true, Some(uscc), Some(region), Some(industry), Some(risk_grade)) =
            (complete, uscc, region, industry, grade)
        {
            list.push(Entity {
                uscc,
                name: row.get("name").to_owned(),
                region,
                industry,
                address: row.get("address").to_owned(),
                risk_grade,
            });
        }
    }
    if rows.is_empty() && out.is_empty() {
        out.push(Problem { line: 1, field: String::new(), reason: "the file has no rows".into() });
    }
    if out.is_empty() { Ok(list) } else { Err(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depts() -> BTreeSet<String> {
        ["xian-food", "xianyang-transport"].map(String::from).into()
    }

    #[test]
    fn a_good_catalogue_in_both_formats() {
        let csv = "code,name,departments,industry,severity,claim_within,close_within\n\
                   61000000200003,冷库氨气浓度超标,xian-food,food,critical,30m,24h\n\
                   61000000300001,闯入作业区,xianyang-transport;xian-food,transport,major,,\n";
        let items = catalogue(csv, Format::Csv, &depts()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].claim_within, Some(Duration::from_secs(1800)));
        assert_eq!(items[1].departments, ["xianyang-transport", "xian-food"]);
        assert_eq!(items[1].close_within, None);
        let json = r#"[
  {"code": "61000000200003", "name": "冷库氨气浓度超标", "departments": ["xian-food"],
   "industry": "food", "severity": "critical", "claim_within": "30m", "close_within": "24h"}
]"#;
        let j = catalogue(json, Format::Json, &depts()).unwrap();
        assert_eq!(j[0], items[0]);
    }

    #[test]
    fn every_bad_row_is_named_with_line_field_and_reason() {
        let csv = "code,name,departments,industry,severity\n\
                   6100000020000,a,xian-food,food,critical\n\
                   61000000200003,b,nobody,fish,urgent\n\
                   61000000200004,,xian-food,food,minor\n\
                   61000000200005,ok,xian-food,food,minor\n";
        let p = catalogue(csv, Format::Csv, &depts()).unwrap_err();
        let got: Vec<(u64, &str)> = p.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(
            got,
            [(2, "code"), (3, "departments"), (3, "industry"), (3, "severity"), (4, "name")]
        );
        assert!(p[0].reason.contains("exactly 14"), "{:?}", p[0]);
        assert!(p[1].reason.contains("nobody"));
    }

    #[test]
    fn json_problems_carry_the_element_line_and_unknown_fields() {
        let json = "[\n{\"code\": \"61000000200003\", \"name\": \"a\", \"departments\": \"xian-food\", \"industry\": \"food\", \"severity\": \"minor\"},\n{\"code\": \"x\", \"colour\": 1}\n]";
        let p = catalogue(json, Format::Json, &depts()).unwrap_err();
        assert!(p.iter().all(|p| p.line == 3), "{p:?}");
        assert!(p.iter().any(|p| p.field == "colour" && p.reason.contains("unknown field")));
        assert!(p.iter().any(|p| p.field == "code"));
        let p = catalogue("{", Format::Json, &depts()).unwrap_err();
        assert!(p[0].reason.contains("not a JSON list"));
    }

    #[test]
    fn an_entity_with_a_wrong_check_character_names_the_position() {
        let csv = "uscc,name,region,industry,address,risk_grade\n\
                   91350100M000100Y43,甲,610116,food,长安区,B\n\
                   91350100M000100Y44,乙,610116,food,长安区,E\n";
        let p = entities(csv, Format::Csv).unwrap_err();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].line, p[0].field.as_str()), (3, "uscc"));
        assert!(p[0].reason.contains("character 18 (the check character)"), "{}", p[0].reason);
        assert_eq!(p[1].field, "risk_grade");
        let ok =
            entities(&csv.lines().take(2).collect::<Vec<_>>().join("\n"), Format::Csv).unwrap();
        assert_eq!(ok[0].risk_grade, RiskGrade::B);
    }
}
