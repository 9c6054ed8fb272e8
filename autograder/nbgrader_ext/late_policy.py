"""The course's late-work policy, as nbgrader's late-submission plugin
(``c.AssignLatePenalties.plugin_class``): nbgrader works out how late a submission is
(its ``timestamp.txt`` against the assignment's due date in the gradebook, extensions
included), asks the plugin for the points to take off, and stores them with the notebook;
its feedback page and the grade table show the score after them.

A submission at most ``grace_hours`` late loses nothing; past that, ``percent`` of its
score goes for every day (or hour, ``per``) since the due date, a period begun counting
whole, never more than ``cap_percent``; later than ``zero_after_days``, it scores zero.
"""
import math

from nbgrader.plugins import BasePlugin
from traitlets import Enum, Float

from autograder import settings

HOUR = 3600
SECONDS_PER = {"hour": HOUR, "day": 24 * HOUR}


class LatePolicy(BasePlugin):
    percent = Float(settings.LATE_PERCENT, min=0, help="% of the score taken off per day (or hour) late").tag(
        config=True)
    per = Enum(tuple(SECONDS_PER), default_value=settings.LATE_PER, help="the period `percent` is for").tag(
        config=True)
    grace_hours = Float(settings.LATE_GRACE_HOURS, min=0, help="hours late that cost nothing").tag(config=True)
    cap_percent = Float(settings.LATE_CAP_PERCENT, min=0, max=100, help="the most % taken off").tag(config=True)
    zero_after_days = Float(settings.LATE_ZERO_AFTER_DAYS, min=0,
                            help="days late after which the score is zero (0: never)").tag(config=True)

    def percent_off(self, seconds_late):
        """The % of the score a submission this many seconds late loses."""
        if seconds_late <= self.grace_hours * HOUR:
            return 0.0
        if self.zero_after_days and seconds_late > self.zero_after_days * SECONDS_PER["day"]:
            return 100.0
        return min(self.cap_percent, self.percent * math.ceil(seconds_late / SECONDS_PER[self.per]))

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        # Rounded so that 10% of 6 points is 0.6, not 0.6000000000000001.
        return round(score * self.percent_off(total_seconds_late) / 100, 6)
