//! Generated events survive the trip to Mango's webhook JSON and back through the real parser,
//! for many seeds and every kind of call (`callbridge_mango::wire::to_json` is the parser's
//! inverse).

use callbridge_mango::webhook::{parse_event, parse_value, Webhook};
use callbridge_mango::wire::to_json;
use callbridge_traffic::{generate, Config, Mix};

#[test]
fn generated_events_round_trip_through_the_parser() {
    let mut checked = 0;
    for seed in 0..40 {
        let t = generate(&Config {
            calls: 60,
            seed,
            duplicates: 0.05,
            reorder: 0.05,
            lost_summaries: 0.1,
            recorded: 0.7,
            mix: if seed % 2 == 0 {
                Mix::uniform()
            } else {
                Mix::default()
            },
            ..Config::default()
        });
        for event in &t.events {
            let (path, json) = to_json(event);
            assert!(json.is_object());
            assert_eq!(
                parse_value(path, &json),
                Ok(Webhook::Event(event.clone())),
                "seed {seed}: {path} {json}"
            );
            // As Mango posts it: the `json` form field is a string.
            assert_eq!(
                parse_event(path, &json.to_string())
                    .ok()
                    .and_then(Webhook::into_event)
                    .as_ref(),
                Some(event)
            );
            checked += 1;
        }
    }
    assert!(checked > 20_000, "{checked}");
}
