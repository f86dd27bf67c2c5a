"""Treatment notes as therapists write them, for the sample clinic and the tests: each names the
activity of its code, a skilled element and an objective measure, so a clean visit stays clean.
Invented text; no note describes a real patient."""

from __future__ import annotations

import re

# Several notes per code, picked at random by the sample; the first is the tests' default.
NOTES: dict[str, tuple[str, ...]] = {
    "97110": (
        "Supine SLR 3x10, quad sets 2x15 with 5 sec hold, seated knee extension 3x10 with 3 lb "
        "cuff weight. VC for quad activation; progressed SLR to 2 lb.",
        "Sidelying hip abduction 3x10, clamshells with red band 3x15, bridges 3x10. Cued for "
        "pelvic control; hip abduction MMT 4-/5.",
        "Shoulder AAROM with wand 2x15, pulleys, ER with yellow band 3x10. TC at scapula; "
        "flexion AROM 130 deg.",
    ),
    "97112": (
        "Single-leg stance on foam 3x20 sec each, tandem stance eyes closed 3x30 sec. VC for "
        "ankle strategy; Berg 44/56.",
        "Rocker board 3x1 min, perturbations in standing, weight shifting A/P. Facilitated hip "
        "strategy; no LOB in 8 of 10 trials.",
    ),
    "97140": (
        "Grade III PA glides L4-L5 3x30 sec, STM to lumbar paraspinals. Reassessed: lumbar "
        "flexion improved 10 deg.",
        "Posterior glide GH joint grade III, myofascial release pec minor; reassessed ER ROM: 60 "
        "deg.",
    ),
    "97124": ("Effleurage and petrissage to lumbar paraspinals; adjusted pressure. Pain 3/10.",),
    "97530": (
        "Sit-to-stand from low chair 3x10, floor-to-waist lifting of 10 lb crate 2x8. VC for "
        "hip hinge and body mechanics.",
        "Car transfer training x3, lift and carry 15 lb box 40 ft x4. Corrected lumbar "
        "flexion; CGA.",
    ),
    "97116": (
        "Gait training with rolling walker 150 ft x3 on level surfaces and stairs x8, CGA. "
        "Cued for step through pattern.",
        "Ambulation with single-point cane 200 ft x2, curb x4. VC for heel strike; gait speed "
        "0.8 m/s.",
    ),
    "97035": (
        "Ultrasound 1 MHz, 1.0 W/cm2 continuous, 8 min to the knee; monitored skin, "
        "pain 3/10 after.",
    ),
    "97032": (
        "Attended electrical stimulation (NMES) to quadriceps, 12 contractions; "
        "adjusted intensity, pain 2/10.",
    ),
    "97535": (
        "Upper-body dressing with adaptive equipment (reacher, button hook), min A. Instructed "
        "in hemi technique; 12 min to complete, down from 18.",
        "Tub transfer with tub bench x3, bathing with long handled sponge, SBA. Educated on "
        "energy conservation; 2 rest breaks.",
    ),
    "97129": (
        "Cognitive intervention: attention and working-memory tasks, 8 of 10 correct "
        "with cues; graded task difficulty.",
    ),
    "97130": (
        "Cognitive intervention continued: problem solving and sequencing, 7 of 10 with cues.",
    ),
    "92507": (
        "Language treatment: naming and sentence formulation tasks, 80% accuracy with cues.",
    ),
    "92526": (
        "Swallowing treatment: effortful swallow and chin-tuck exercises 3x10; "
        "instructed in strategy.",
    ),
}
# Notes that name the activity and measure it but show no skilled element (skill-not-shown)
UNSKILLED: dict[str, str] = {
    "97110": "Seated knee extension 3x10 with 3 lb, SLR 3x10, bridges 3x10.",
    "97112": "Single-leg stance on foam 3x20 sec each, tandem stance 3x30 sec.",
    "97530": "Sit-to-stand 3x10, floor-to-waist lifting of 10 lb crate 2x8.",
    "97116": "Ambulation with rolling walker 150 ft x3, stairs x8.",
    "97140": "Grade III PA glides L4-L5 3x30 sec; lumbar flexion 60 deg.",
    "97535": "Upper-body dressing with reacher and button hook, 12 min to complete.",
}
# Notes that describe a neighbouring code's activity, for a line billed under the key
# (code-choice-review, suggesting the value's code)
MISCODED: dict[str, tuple[str, str]] = {
    "97110": ("97112", "Single-leg stance on foam 3x30 sec each, tandem stance eyes closed 3x20 "
              "sec; VC for upright posture."),
    "97530": ("97110", "Seated knee extensions 3x10 with 3 lb cuff weight, SLR 2x15; VC for "
              "form."),
    "97112": ("97116", "Gait training with rolling walker 200 ft x2, CGA; cued for step through "
              "pattern. Stairs x8."),
    "97140": ("97124", "Effleurage and petrissage to lumbar paraspinals for relaxation; adjusted "
              "pressure. Pain 3/10."),
    "97535": ("97530", "Box lift floor to counter 5 lb x8, carrying tray 30 ft, overhead "
              "reaching 2x10; cued for body mechanics."),
}  # fmt: skip
GENERIC = "{label}: performed 3x10 as planned; instructed in technique and monitored response."


def clean_note(code: str, label: str = "", pick: int = 0) -> str:
    """A note for a service of `code` that documents it fully (activity, skill, measure); `pick`
    chooses among the code's notes (the sample passes a number of its own, so the notes vary
    without drawing from its random sequence)."""
    choices = NOTES.get(code)
    if not choices:
        return GENERIC.format(label=label or code)
    return choices[pick % len(choices)]


def without_measures(note: str) -> str:
    """The note with every number and assistance level taken out: it still names the activity,
    it measures nothing."""
    note = _ASSISTANCE.sub("", note)
    kept = [w for w in note.split() if not any(c.isdigit() for c in w)]
    return " ".join(kept)


_ASSISTANCE = re.compile(r",?\s*\b(?:(?:min|mod|max)\s*A|CGA|SBA)\b")
