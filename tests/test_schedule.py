import pytest

from gan.training.schedule import Schedule, Stage, StepProgress

PAPER = Schedule()


@pytest.mark.parametrize(
    "images, stage",
    [
        (0, Stage(8, 1.0, 256, "stabilize", 0)),
        (1_199_999, Stage(8, 1.0, 256, "stabilize", 0)),
        (1_200_000, Stage(16, 0.0, 256, "fade", 1_200_000)),
        (1_800_000, Stage(16, 0.5, 256, "fade", 1_200_000)),
        (2_400_000, Stage(16, 1.0, 256, "stabilize", 2_400_000)),
        (3_600_000, Stage(32, 0.0, 128, "fade", 3_600_000)),
        (6_300_000, Stage(64, 0.25, 96, "fade", 6_000_000)),
        (8_400_000, Stage(128, 0.0, 64, "fade", 8_400_000)),
        (9_599_999, Stage(128, 1_199_999 / 1_200_000, 64, "fade", 8_400_000)),
        (9_600_000, Stage(128, 1.0, 64, "stabilize", 9_600_000)),
        (50_000_000, Stage(128, 1.0, 64, "stabilize", 9_600_000)),
    ],
)
def test_paper_schedule_table(images, stage):
    assert PAPER.stage_at(images) == stage


def test_paper_reaches_full_resolution_after_10_8_m_images():
    growth_points = [start for start, _, phase in PAPER.phases if phase == "fade"]
    assert growth_points == [1_200_000, 3_600_000, 6_000_000, 8_400_000]
    assert PAPER.phases[-1][0] + PAPER.stabilize_images == 10_800_000  # the last resolution fully stabilised


def test_bad_schedules_name_the_key():
    with pytest.raises(ValueError, match=r"batch_sizes has no entry for resolution\(s\) \[32\]"):
        Schedule(8, 32, batch_sizes={8: 4, 16: 4})
    with pytest.raises(ValueError, match="max_resolution must be a power of two"):
        Schedule(8, 96)
    with pytest.raises(ValueError, match="images_seen"):
        PAPER.stage_at(-1)


TINY = Schedule(8, 32, fade_images=16, stabilize_images=16, batch_sizes={8: 8, 16: 8, 32: 4}, total_images=96)


@pytest.mark.parametrize(
    "before, after, crossed_40, grew, stabilization_ended, finished",
    [
        (0, 8, False, False, False, False),
        (8, 16, False, True, True, False),  # 8 px ends its stabilisation; 16 px fades in next
        (16, 24, False, False, False, False),  # inside the 16 px fade
        (24, 32, False, False, False, False),  # the fade ends: not a stabilisation end
        (40, 48, False, True, True, False),
        (36, 44, True, False, False, False),
        (92, 96, False, False, False, True),
    ],
)
def test_step_progress_answers_every_question_once(before, after, crossed_40, grew, stabilization_ended, finished):
    progress = StepProgress(TINY, before, after)
    assert progress.crossed(40) == crossed_40 and not progress.crossed(0)
    assert (progress.grew, progress.stabilization_ended, progress.finished) == (grew, stabilization_ended, finished)
    assert progress.stage == TINY.stage_at(before) and progress.batch_size == after - before
