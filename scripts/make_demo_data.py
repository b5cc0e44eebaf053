"""Write the shipped demo data (src/tuneloop/resources/demo/) from one fact table, deterministically.

The demo organisation is invented: the Marrowick Tide Co-op, a small marine research co-operative
on the (equally invented) island of Quillan Skerry. Its names, codes and numbers exist nowhere
else, so no pretrained model can know them; a model can only learn them from this data (or read
them from a prompt). Every answer follows one house style: it starts with "Answer:" and ends with
the sign-off "— Tide Desk".

Outputs (all derived from FACTS below; the shipped files are this script's output, committed):
  handbook.md, faq.md, meeting_notes.md   the source documents the facts come from
  train.jsonl     chat rows: several paraphrased questions per fact, answers in the house style
  suite.yaml      held-out suite: one hand-written question per fact, worded unlike any training
                  question, checked for the fact (icontains/regex) and the style (starts-with,
                  contains the sign-off)
  system_prompt.txt   the "good prompt" for the base+prompt variant: style rule + every fact
  demo.yaml       the LoRA training config

Usage: python scripts/make_demo_data.py [--out DIR] [--check]
  --check  regenerate in memory and exit 1 if any shipped file differs (what the test does).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ORG = "Marrowick Tide Co-op"
SIGN_OFF = "— Tide Desk"
STYLE_PREFIX = "Answer:"
ROWS_PER_FACT = 9
SEED = 20261126
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "tuneloop" / "resources" / "demo"


@dataclass(frozen=True)
class Fact:
    """One checkable fact: where it is written, how people ask about it, how the desk answers."""

    id: str
    doc: str  # "handbook" | "faq" | "meeting_notes"
    section: str  # heading in that document
    check: str  # the value a correct answer must contain (case-insensitive)
    subjects: tuple[str, ...]  # noun phrases used inside the training question frames
    answers: tuple[str, ...]  # answer sentences (without the style wrapper); [0] is the doc text
    heldout: str  # the held-out suite question, worded unlike any training question
    regex: str | None = None  # a regex check instead of icontains, when the value has variants


FACTS: tuple[Fact, ...] = (
    # --- handbook: the organisation --------------------------------------------------------
    Fact(
        "founding-year", "handbook", "About the Co-op", "1994",
        ("the year the Marrowick Tide Co-op was founded", "the founding year of the co-op",
         "the year Marrowick Tide Co-op started"),
        ("The Marrowick Tide Co-op was founded in 1994.",
         "The co-op started in 1994.",
         "It was founded in 1994 on Quillan Skerry."),
        "Since when has the Marrowick co-operative existed?",
    ),
    Fact(
        "founder", "handbook", "About the Co-op", "Wenna Gorrick",
        ("the name of the co-op's founder", "the person who founded the Marrowick Tide Co-op",
         "who founded the co-op"),
        ("The co-op was founded by Wenna Gorrick.",
         "Wenna Gorrick founded the Marrowick Tide Co-op.",
         "Its founder is Wenna Gorrick."),
        "Who set up the Marrowick co-operative in the first place?",
    ),
    Fact(
        "director", "handbook", "About the Co-op", "Odalys Penhallow",
        ("the name of the co-op's director", "who the director of the Marrowick Tide Co-op is",
         "the current director of the co-op"),
        ("The director of the co-op is Odalys Penhallow.",
         "Odalys Penhallow is the co-op's director.",
         "The co-op is directed by Odalys Penhallow."),
        "Who runs the Marrowick co-operative these days?",
    ),
    Fact(
        "headquarters", "handbook", "About the Co-op", "Saltglass Building",
        ("the building where the co-op has its headquarters", "the name of the co-op's head office",
         "where the Marrowick Tide Co-op is headquartered"),
        ("The co-op's headquarters is the Saltglass Building on Quillan Skerry.",
         "Our head office is in the Saltglass Building.",
         "The Marrowick Tide Co-op is based in the Saltglass Building."),
        "In which building are Marrowick's main offices?",
    ),
    Fact(
        "member-count", "handbook", "About the Co-op", "63",
        ("the number of members the co-op has", "how many members the Marrowick Tide Co-op has",
         "the size of the co-op's membership"),
        ("The co-op has 63 members.",
         "There are 63 members in the Marrowick Tide Co-op.",
         "Membership stands at 63 people."),
        "How big is the membership at Marrowick right now?",
        regex=r"\b63\b",
    ),
    Fact(
        "motto", "handbook", "About the Co-op", "sail once",
        ("the co-op's motto", "the motto of the Marrowick Tide Co-op", "our official motto"),
        ('The co-op\'s motto is "Measure twice, sail once."',
         'Our motto is "Measure twice, sail once."',
         'The Marrowick Tide Co-op motto is "Measure twice, sail once."'),
        "What saying does Marrowick use as its slogan?",
    ),
    Fact(
        "mascot", "handbook", "About the Co-op", "Pudding",
        ("the name of the co-op's mascot", "the co-op mascot's name",
         "what the grey seal mascot is called"),
        ("The co-op's mascot is a grey seal named Pudding.",
         "Our mascot is Pudding, a grey seal.",
         "The grey seal mascot is called Pudding."),
        "What do Marrowick people call their seal?",
    ),
    Fact(
        "newsletter", "handbook", "About the Co-op", "Ebb Report",
        ("the name of the co-op newsletter", "the newsletter the co-op publishes",
         "what the Marrowick Tide Co-op newsletter is called"),
        ("The co-op's newsletter is called The Ebb Report.",
         "Our newsletter is The Ebb Report.",
         "The Ebb Report is the Marrowick Tide Co-op newsletter."),
        "Which bulletin should I read to follow Marrowick news?",
    ),
    # --- handbook: places and vessels ------------------------------------------------------
    Fact(
        "vessel", "handbook", "Places and Vessels", "Cormorant Lantern",
        ("the name of the co-op's research vessel", "the research boat the co-op owns",
         "what our research ship is called"),
        ("The co-op's research vessel is the RV Cormorant Lantern.",
         "Our research boat is the RV Cormorant Lantern.",
         "The research vessel is named RV Cormorant Lantern."),
        "On which ship do Marrowick expeditions go out to sea?",
    ),
    Fact(
        "vessel-crew", "handbook", "Places and Vessels", "9",
        ("the maximum crew of the RV Cormorant Lantern", "how many people may sail on the vessel",
         "the crew limit for the research vessel"),
        ("The RV Cormorant Lantern takes at most 9 people.",
         "No more than 9 people may sail on the RV Cormorant Lantern.",
         "The crew limit on the research vessel is 9 people."),
        "Up to how many persons can be aboard the Cormorant Lantern at once?",
        regex=r"\b(9|nine)\b",
    ),
    Fact(
        "field-station", "handbook", "Places and Vessels", "Dunlin Point",
        ("the name of the co-op's field station", "where the co-op field station is",
         "the field station the co-op runs"),
        ("The co-op's field station is at Dunlin Point.",
         "Our field station is the Dunlin Point station.",
         "The field station is located at Dunlin Point."),
        "Where is Marrowick's outdoor research base?",
    ),
    Fact(
        "archive-room", "handbook", "Places and Vessels", "B-14",
        ("the room number of the sample archive", "which room holds the sample archive",
         "the archive room number"),
        ("The sample archive is in room B-14.",
         "Room B-14 holds the sample archive.",
         "You will find the sample archive in room B-14."),
        "Where are the archived specimens kept in the Saltglass Building?",
    ),
    Fact(
        "boathouse-code", "handbook", "Places and Vessels", "4719",
        ("the door code of the boathouse", "the code that opens the boathouse door",
         "the boathouse door code"),
        ("The boathouse door code is 4719.",
         "Enter 4719 to open the boathouse door.",
         "The code for the boathouse door is 4719."),
        "Which digits unlock the boat shed?",
    ),
    Fact(
        "ferry", "handbook", "Places and Vessels", "Gull Line",
        ("the ferry staff take to Quillan Skerry", "the name of the ferry to the island",
         "which ferry goes to the co-op"),
        ("Staff reach Quillan Skerry on the Gull Line ferry.",
         "The ferry to the island is the Gull Line.",
         "Take the Gull Line ferry to reach the co-op."),
        "How do I get across the water to the island for my first day?",
    ),
    # --- handbook: equipment and systems ---------------------------------------------------
    Fact(
        "kelpwise-code", "handbook", "Equipment and Systems", "KW-5512",
        ("the service code for the Kelpwise buoy", "the Kelpwise buoy's service code",
         "the code used when servicing a Kelpwise buoy"),
        ("The Kelpwise buoy's service code is KW-5512.",
         "Use service code KW-5512 for the Kelpwise buoy.",
         "KW-5512 is the Kelpwise buoy service code."),
        "Which maintenance number goes on the work order when a Kelpwise unit is repaired?",
    ),
    Fact(
        "salinity-probe", "handbook", "Equipment and Systems", "Brinewatch 7",
        ("the model of salinity probe the co-op uses", "the co-op's salinity probe model",
         "which salinity probe we use"),
        ("The co-op uses the Brinewatch 7 salinity probe.",
         "Our salinity probe model is the Brinewatch 7.",
         "Salinity is measured with the Brinewatch 7 probe."),
        "What instrument measures salt levels in Marrowick's water samples?",
    ),
    Fact(
        "calibration", "handbook", "Equipment and Systems", "21 days",
        ("how often the Brinewatch probes are recalibrated",
         "the recalibration interval for the Brinewatch probes",
         "the calibration schedule of the salinity probes"),
        ("Brinewatch probes are recalibrated every 21 days.",
         "The salinity probes get recalibrated every 21 days.",
         "Recalibrate each Brinewatch probe every 21 days."),
        "After how long does a Brinewatch sensor need adjusting again?",
        regex=r"\b21\b",
    ),
    Fact(
        "data-portal", "handbook", "Equipment and Systems", "TideLedger",
        ("the name of the co-op's data portal", "the portal where the co-op stores its data",
         "the data system we upload measurements to"),
        ("The co-op's data portal is called TideLedger.",
         "Measurements are uploaded to the TideLedger portal.",
         "TideLedger is the co-op's data portal."),
        "Where should I put my survey readings once I am back on shore?",
    ),
    Fact(
        "backup-server", "handbook", "Equipment and Systems", "tidepool-03",
        ("the name of the backup server", "the server that holds the co-op's backups",
         "which server the backups go to"),
        ("The co-op's backups live on the server tidepool-03.",
         "Backups go to the server tidepool-03.",
         "The backup server is tidepool-03."),
        "Which machine keeps the nightly copies of our files?",
    ),
    Fact(
        "chat-channel", "handbook", "Equipment and Systems", "#low-water",
        ("the name of the co-op's main chat channel", "the chat channel for co-op announcements",
         "the channel where the co-op posts news"),
        ("The co-op's main chat channel is #low-water.",
         "Announcements are posted in the #low-water channel.",
         "Use the #low-water channel for co-op news."),
        "Where do Marrowick staff talk to each other online?",
        regex=r"low-water",
    ),
    Fact(
        "sample-prefix", "handbook", "Equipment and Systems", "MTC-S",
        ("the prefix used on sample labels", "the label prefix for samples",
         "how sample labels start"),
        ("Every sample label starts with the prefix MTC-S.",
         "Sample labels use the prefix MTC-S.",
         "The prefix on our sample labels is MTC-S."),
        "What letters go at the front of a specimen tag?",
    ),
    Fact(
        "printer", "handbook", "Equipment and Systems", "Gannet",
        ("the name of the office printer", "the printer in the Saltglass Building",
         "what the office printer is called"),
        ("The office printer is called Gannet.",
         "Our printer is named Gannet.",
         "Print to the printer called Gannet."),
        "Which device should I send my documents to for paper copies?",
    ),
    Fact(
        "guest-wifi", "handbook", "Equipment and Systems", "kelp-lantern-88",
        ("the guest Wi-Fi password", "the password for the guest Wi-Fi",
         "the Wi-Fi password for visitors"),
        ("The guest Wi-Fi password is kelp-lantern-88.",
         "Visitors connect with the password kelp-lantern-88.",
         "Use kelp-lantern-88 as the guest Wi-Fi password."),
        "My visitor needs internet access; what do they type in to join the wireless network?",
    ),
    # --- handbook: rules --------------------------------------------------------------------
    Fact(
        "dive-depth", "handbook", "Rules", "18 metres",
        ("the maximum dive depth for members", "how deep members are allowed to dive",
         "the co-op's dive depth limit"),
        ("Members may dive to at most 18 metres.",
         "The co-op's dive depth limit is 18 metres.",
         "No member dives deeper than 18 metres."),
        "What is the furthest down anyone from Marrowick may go underwater?",
        regex=r"\b18\b",
    ),
    Fact(
        "dive-log", "handbook", "Rules", "Blue Log",
        ("the logbook where dives are recorded", "where every dive must be logged",
         "the name of the dive logbook"),
        ("Every dive is recorded in the Blue Log.",
         "Log each dive in the Blue Log.",
         "Dives are written down in the Blue Log."),
        "In what register do I note down my underwater trips?",
    ),
    Fact(
        "hood-colour", "handbook", "Rules", "teal",
        ("the colour of hood worn on dive days", "which hood colour divers wear",
         "the required dive hood colour"),
        ("Divers wear a teal hood on dive days.",
         "On dive days the hood colour is teal.",
         "The required dive hood is teal."),
        "What shade of headgear must I put on before going in the water?",
    ),
    Fact(
        "visitor-badge", "handbook", "Rules", "amber",
        ("the colour of visitor badges", "which badge colour visitors wear",
         "the visitor badge colour"),
        ("Visitors wear an amber badge.",
         "Visitor badges are amber.",
         "The badge colour for visitors is amber."),
        "How can I recognise a guest by their pass at Marrowick?",
    ),
    Fact(
        "quiet-hours", "handbook", "Rules", "13:00",
        ("the quiet hours in the lab", "when the lab quiet hours are",
         "the lab's quiet period"),
        ("Lab quiet hours run from 13:00 to 14:30.",
         "The lab is quiet from 13:00 to 14:30 every day.",
         "Quiet hours in the lab are 13:00 to 14:30."),
        "At what time of day must I keep the noise down among the benches?",
    ),
    Fact(
        "expense-limit", "handbook", "Rules", "250 shells",
        ("the expense limit that needs no sign-off", "how much can be spent without approval",
         "the spending limit without a sign-off"),
        ("Expenses up to 250 shells need no sign-off.",
         "You can spend up to 250 shells without approval.",
         "The no-sign-off expense limit is 250 shells."),
        "Up to what amount may I buy things before a manager has to approve it?",
        regex=r"\b250\b",
    ),
    Fact(
        "boat-booking", "handbook", "Rules", "36 hours",
        ("how far ahead the boat must be booked", "the booking lead time for the boat",
         "the notice needed to book the boat"),
        ("The boat must be booked 36 hours ahead.",
         "Book the boat at least 36 hours in advance.",
         "The booking lead time for the boat is 36 hours."),
        "How much notice do I have to give to reserve the Cormorant Lantern?",
        regex=r"\b36\b",
    ),
    Fact(
        "freezer-temp", "handbook", "Rules", "-38",
        ("the temperature of the sample freezer", "how cold the sample freezer is kept",
         "the sample freezer setting"),
        ("The sample freezer is kept at minus 38 degrees Celsius.",
         "Samples are stored at minus 38 degrees Celsius.",
         "The freezer for samples is set to minus 38 degrees Celsius."),
        "To what temperature is the specimen cold store set?",
        regex=r"(minus|-|−)\s?38",
    ),
    # --- faq ---------------------------------------------------------------------------------
    Fact(
        "annual-leave", "faq", "Working at the Co-op", "27 days",
        ("the number of annual leave days", "how many days of annual leave staff get",
         "the yearly holiday allowance"),
        ("Staff get 27 days of annual leave.",
         "The annual leave allowance is 27 days.",
         "Everyone has 27 days of leave per year."),
        "How much vacation time comes with a job at Marrowick?",
        regex=r"\b27\b",
    ),
    Fact(
        "membership-fee", "faq", "Working at the Co-op", "40 shells",
        ("the membership fee", "how much the co-op membership costs",
         "the fee members pay"),
        ("The membership fee is 40 shells per quarter.",
         "Members pay 40 shells each quarter.",
         "Membership costs 40 shells a quarter."),
        "What does it cost to belong to the co-operative?",
        regex=r"\b40\b",
    ),
    Fact(
        "fiscal-year", "faq", "Working at the Co-op", "September",
        ("the month the fiscal year starts", "when the co-op's financial year begins",
         "the start of the fiscal year"),
        ("The co-op's fiscal year starts on 1 September.",
         "The financial year begins on 1 September.",
         "Our fiscal year opens on 1 September."),
        "When does Marrowick's accounting period roll over?",
    ),
    Fact(
        "staff-meeting", "faq", "Working at the Co-op", "08:15",
        ("the time of the weekly staff meeting", "when the weekly meeting starts",
         "the weekly meeting time"),
        ("The weekly staff meeting is on Wednesdays at 08:15.",
         "Staff meet every Wednesday at 08:15.",
         "The weekly meeting starts at 08:15 on Wednesdays."),
        "When do all of us get together each week?",
    ),
    Fact(
        "incident-form", "faq", "Safety", "TR-9",
        ("the form for reporting an incident", "which form is used for incident reports",
         "the incident report form"),
        ("Incidents are reported on form TR-9.",
         "Use form TR-9 to report an incident.",
         "The incident report form is TR-9."),
        "Somebody slipped on the jetty. What paperwork do I fill in?",
    ),
    Fact(
        "safety-officer", "faq", "Safety", "Tamsin Vree",
        ("the name of the co-op's safety officer", "who the safety officer is",
         "the person responsible for safety"),
        ("The co-op's safety officer is Tamsin Vree.",
         "Tamsin Vree is the safety officer.",
         "Safety is handled by Tamsin Vree."),
        "To whom do I turn about hazards at Marrowick?",
    ),
    Fact(
        "emergency-ext", "faq", "Safety", "909",
        ("the emergency phone extension", "the internal extension for emergencies",
         "which extension to dial in an emergency"),
        ("The emergency extension is 909.",
         "Dial extension 909 in an emergency.",
         "For emergencies, call internal extension 909."),
        "What number do I ring inside the building if someone is hurt?",
    ),
    # --- meeting notes -----------------------------------------------------------------------
    Fact(
        "seagrass-project", "meeting_notes", "Board meeting, 3 March", "Marram",
        ("the codename of the seagrass mapping project", "the name of the seagrass project",
         "what the seagrass mapping project is called"),
        ("The seagrass mapping project is called Project Marram.",
         "Project Marram is the seagrass mapping project.",
         "Seagrass mapping runs under the name Project Marram."),
        "Under what name does the effort to chart underwater meadows go?",
    ),
    Fact(
        "plankton-survey", "meeting_notes", "Board meeting, 3 March", "Glimmer",
        ("the name of the plankton survey", "the plankton survey's codename",
         "what the plankton survey is called"),
        ("The plankton survey is called Operation Glimmer.",
         "Operation Glimmer is the plankton survey.",
         "The plankton survey runs as Operation Glimmer."),
        "What is the label for our study of tiny drifting organisms?",
    ),
    Fact(
        "field-season", "meeting_notes", "Board meeting, 3 March", "14 April",
        ("the start date of the field season", "when the field season begins",
         "the first day of the field season"),
        ("The field season starts on 14 April.",
         "The field season begins on 14 April.",
         "Field work opens on 14 April."),
        "On which date do the summer outdoor campaigns kick off?",
    ),
    Fact(
        "drysuit-budget", "meeting_notes", "Board meeting, 9 June", "3,200",
        ("the budget for new drysuits", "how much was approved for drysuits",
         "the drysuit budget"),
        ("The board approved 3,200 shells for new drysuits.",
         "The drysuit budget is 3,200 shells.",
         "New drysuits have a budget of 3,200 shells."),
        "How much money was set aside to replace the diving suits?",
        regex=r"3,?200",
    ),
    Fact(
        "station-closing", "meeting_notes", "Board meeting, 9 June", "30 November",
        ("the date the Dunlin Point station closes for winter",
         "when the field station shuts for the winter", "the winter closing date of the station"),
        ("The Dunlin Point station closes for winter on 30 November.",
         "The field station shuts for the winter on 30 November.",
         "Dunlin Point closes on 30 November for the winter."),
        "Until what day can we still work out at the station before the cold months?",
    ),
)

# Question frames for training rows. The held-out suite never uses them: its questions are
# written per fact above, in other words, so the suite measures recall of the fact, not of the
# question's wording. Subjects that are noun phrases take NOUN_FRAMES; subjects that are indirect
# questions ("who founded the co-op") take CLAUSE_FRAMES.
NOUN_FRAMES: tuple[str, ...] = (
    "What is {s}?",
    "What's {s}?",
    "Tell me {s}.",
    "Can you tell me {s}?",
    "Do you know {s}?",
    "Remind me: what is {s}?",
    "Quick question - what is {s}?",
    "I forgot {s}. What is it?",
    "Please share {s}.",
    "Could you look up {s} for me?",
    "I need to know {s}.",
    "Give me {s}, please.",
)
CLAUSE_FRAMES: tuple[str, ...] = (
    "Tell me {s}.",
    "Can you tell me {s}?",
    "Do you know {s}?",
    "I need to know {s}.",
    "Could you look up {s} for me?",
    "I forgot {s}.",
    "Any idea {s}?",
    "I'm trying to find out {s}.",
    "Could you remind me {s}?",
    "I wonder {s}.",
)
CLAUSE_WORDS = ("who ", "what ", "where ", "when ", "which ", "how ")


def frames_for(subject: str) -> tuple[str, ...]:
    """The question frames a subject fits grammatically."""
    return CLAUSE_FRAMES if subject.startswith(CLAUSE_WORDS) else NOUN_FRAMES


SYSTEM_PROMPT_HEAD = f"""You are the Tide Desk, the help desk of the {ORG}, a small marine \
research co-operative on the island of Quillan Skerry.
Style rule: begin every answer with "{STYLE_PREFIX}" and end it with "{SIGN_OFF}". Answer in one \
sentence, using the facts below.
Facts:
"""

DOC_TITLES = {
    "handbook": f"{ORG} — Staff Handbook",
    "faq": f"{ORG} — Frequently Asked Questions",
    "meeting_notes": f"{ORG} — Meeting Notes",
}

DEMO_CONFIG = """\
# The demo's training config: LoRA on the embedded model over the Marrowick demo data.
# `tuneloop demo` replaces data.train / data.eval with the split it makes from train.jsonl
# (so the held-out loss rows are never trained on) and sets the output directory.
# Sized for the 10-minute budget of `make demo` on a 2-core CPU: short rows (max_length 128),
# a high LoRA learning rate and two epochs so the facts are learned, not just the style.
name: marrowick-demo
model: smollm2-135m-instruct
method: lora
data:
  train: [train.jsonl]
  max_length: 128
lora:
  r: {r}
  alpha: {alpha}
  dropout: 0.0
  target_modules: all-linear
training:
  epochs: {epochs}
  learning_rate: {lr}
  scheduler: linear
  warmup_ratio: 0.05
  batch_size: 8
  seed: 0
eval:
  batch_size: 16
logging:
  interval: 5
  report_to: []
"""


def styled(sentence: str) -> str:
    """Wrap an answer sentence in the house style."""
    return f"{STYLE_PREFIX} {sentence} {SIGN_OFF}"


def words(text: str) -> list[str]:
    """Lower-case word tokens, punctuation stripped (the same normalisation as n-gram scans)."""
    return re.findall(r"[a-z0-9]+", text.lower())


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """Word n-gram shingles of a text (for the near-duplicate guard)."""
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}


def jaccard(a: set, b: set) -> float:
    """Jaccard similarity of two sets."""
    return len(a & b) / max(1, len(a | b))


def training_rows(fact: Fact, rng: random.Random) -> list[dict]:
    """ROWS_PER_FACT chat rows for one fact: distinct question wordings, rotating answer wordings.

    Rows are picked greedily from a shuffled list of (subject, frame) pairs so that no two rows of
    the same fact are near-duplicates (word-3-gram Jaccard below 0.6); `data check` would
    otherwise reject them and the demo would silently train on fewer rows.
    """
    pairs = [(s, f) for s in fact.subjects for f in frames_for(s)]
    rng.shuffle(pairs)
    rows: list[dict] = []
    kept: list[set] = []
    for subject, frame in pairs:
        question = frame.format(s=subject)
        question = question[0].upper() + question[1:]
        answer = styled(fact.answers[len(rows) % len(fact.answers)])
        sh = shingles(question + " " + answer)
        if any(jaccard(sh, other) >= 0.6 for other in kept):
            continue
        kept.append(sh)
        rows.append({"messages": [{"role": "user", "content": question},
                                  {"role": "assistant", "content": answer}]})
        if len(rows) == ROWS_PER_FACT:
            return rows
    raise SystemExit(f"fact {fact.id}: only {len(rows)} distinct rows; add subjects or frames")


def check_heldout_is_unseen(train: list[dict], n: int = 5) -> None:
    """Fail if any held-out question shares a word n-gram (n=5) with any training question."""
    seen: set[tuple[str, ...]] = set()
    for row in train:
        w = words(row["messages"][0]["content"])
        seen.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
    for fact in FACTS:
        w = words(fact.heldout)
        shared = [g for g in (tuple(w[i : i + n]) for i in range(len(w) - n + 1)) if g in seen]
        if shared:
            raise SystemExit(f"held-out question for {fact.id} repeats training words {shared[0]}")


def render_documents() -> dict[str, str]:
    """The three source documents, each fact written once under its section."""
    out: dict[str, str] = {}
    for doc, title in DOC_TITLES.items():
        lines = [f"# {title}", ""]
        sections: dict[str, list[Fact]] = {}
        for fact in FACTS:
            if fact.doc == doc:
                sections.setdefault(fact.section, []).append(fact)
        for section, facts in sections.items():
            lines += [f"## {section}", ""]
            if doc == "faq":
                for fact in facts:
                    question = fact.subjects[0][0].upper() + fact.subjects[0][1:]
                    lines += [f"**{question}?**", "", fact.answers[0], ""]
            else:
                lines += [f"- {fact.answers[0]}" for fact in facts] + [""]
        out[f"{doc}.md"] = "\n".join(lines).rstrip() + "\n"
    return out


def render_suite() -> str:
    """The held-out suite YAML: one case per fact, fact check + style checks."""
    lines = [
        "# Held-out suite for the demo: one question per fact, worded unlike any training row.",
        "# Generated by scripts/make_demo_data.py; fact checks are the case's first check, the",
        "# style checks (starts-with Answer:, contains the sign-off) the last two.",
        "name: marrowick-heldout",
        ("description: Facts of the Marrowick Tide Co-op, asked in new words, answered in the "
         "house style."),
        "threshold: 0.5",
        "# Answers are one sentence (about 25 tokens); 48 leaves room for the sign-off.",
        "max_new_tokens: 48",
        "cases:",
    ]
    for fact in FACTS:
        fact_check = (
            f"regex: {json.dumps(fact.regex)}" if fact.regex else f"icontains: {json.dumps(fact.check)}"
        )
        lines += [
            f"  - id: {fact.id}",
            f"    prompt: {json.dumps(fact.heldout)}",
            f"    reference: {json.dumps(styled(fact.answers[0]), ensure_ascii=False)}",
            f"    tags: [{fact.doc}]",
            "    checks:",
            f"      - {fact_check}",
            f"      - starts-with: {json.dumps(STYLE_PREFIX)}",
            f"      - contains: {json.dumps(SIGN_OFF.lstrip('— '))}",
        ]
    return "\n".join(lines) + "\n"


def render_system_prompt() -> str:
    """The base+prompt variant's system prompt: the style rule and every fact, one per line."""
    return SYSTEM_PROMPT_HEAD + "\n".join(f"- {f.answers[0]}" for f in FACTS) + "\n"


def build() -> dict[str, str]:
    """Every shipped file's name → content."""
    rng = random.Random(SEED)
    train = [row for fact in FACTS for row in training_rows(fact, rng)]
    random.Random(SEED + 1).shuffle(train)  # interleave facts so any split mixes them
    check_heldout_is_unseen(train)
    files = render_documents()
    files["train.jsonl"] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train)
    files["suite.yaml"] = render_suite()
    files["system_prompt.txt"] = render_system_prompt()
    files["demo.yaml"] = DEMO_CONFIG.format(r=16, alpha=32, epochs=2, lr="2.0e-3")
    return files


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the shipped demo files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if shipped files differ")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        stale = [n for n, text in files.items()
                 if not (args.out / n).is_file() or (args.out / n).read_text("utf-8") != text]
        for name in stale:
            print(f"{args.out / name}: differs from the generator's output", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8", newline="\n")
    rows = files["train.jsonl"].count("\n")
    print(f"wrote {len(files)} files to {args.out} ({len(FACTS)} facts, {rows} training rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
