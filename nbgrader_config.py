"""nbgrader configuration of this course; the repository root is the course directory."""
c = get_config()  # noqa: F821 (injected by traitlets)

c.CourseDirectory.root = "."
c.CourseDirectory.course_id = "parameter-management"
# Student copies must work on their own: the check helper ships with each assignment.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
# Re-add deleted grade cells when autograding, so one deleted test does not hide others.
c.OverwriteCells.add_missing_cells = True
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Grading: nbgrader's own Autograde pipeline with two steps of ours in place of its
# kernel-per-notebook Execute: run the code in a warm sandboxed pool, then judge the
# tests' recorded observations outside the student's process (autograder/nbgrader_ext/);
# then a third removes any line of the hidden tests from all that is stored.
# Two of nbgrader's steps are replaced by versions that only cost less (same preprocessors module).
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autograder.nbgrader_ext import (ExecuteSandboxed, HideTestCode, JudgeChecks,  # noqa: E402
                                     OverwriteCellsIfMissing, SaveAutoGradesAtOnce)
from autograder.nbgrader_ext.sanitize import SanitizeStudentHTML  # noqa: E402
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,  # noqa: E402
                                    IgnorePattern, LimitOutput, OverwriteKernelspec)

c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCellsIfMissing,
                                      CheckCellMetadata]
c.Autograde.autograde_preprocessors = [ExecuteSandboxed, JudgeChecks, HideTestCode, IgnorePattern, LimitOutput,
                                       SaveAutoGradesAtOnce, AssignLatePenalties, SanitizeStudentHTML,
                                       CheckCellMetadata]
# nbgrader's own notebook exporter, validating the notebook once rather than after every step.
from autograder.nbgrader_ext.exporters import AutogradeExporter  # noqa: E402

c.Autograde.exporter_class = AutogradeExporter
# Feedback shows test cells without their hidden part (nbgrader's own ClearHiddenTests),
# questions by their headings, and written answers not graded yet as awaiting grading.
from nbgrader.preprocessors import ClearHiddenTests  # noqa: E402
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from autograder.nbgrader_ext.get_grades_awaiting import GetGradesAwaiting  # noqa: E402
from autograder.nbgrader_ext.question_titles import QuestionTitles  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGradesAwaiting, QuestionTitles, CSSHTMLHeaderPreprocessor, ClearHiddenTests]
# Feedback pages by the hundred: the same page, with the master's cells rendered once;
# nbgrader's feedback template, extended by ours (which needs the two steps above).
from autograder.nbgrader_ext.feedback import (TEMPLATE, TEMPLATE_DIRS, TEMPLATE_FILE,  # noqa: E402
                                              FeedbackHTMLExporter)

c.GenerateFeedback.exporter_class = FeedbackHTMLExporter
c.FeedbackPageExporter.template_name = TEMPLATE
c.FeedbackPageExporter.template_file = TEMPLATE_FILE
c.FeedbackPageExporter.extra_template_basedirs = TEMPLATE_DIRS
# Late work: nbgrader's AssignLatePenalties (in the list above) asks our policy how many points a
# late submission loses; its defaults are in autograder/settings.py, and a course may set
# c.LatePolicy.percent, .per ("day" or "hour"), .grace_hours, .cap_percent, .zero_after_days.
from autograder.nbgrader_ext.late_policy import LatePolicy  # noqa: E402

c.AssignLatePenalties.plugin_class = LatePolicy
