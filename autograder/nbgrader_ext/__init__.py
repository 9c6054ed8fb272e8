"""The grader's steps in nbgrader's Autograde and GenerateFeedback converters: one
preprocessor per file, as nbgrader's own ``preprocessors`` package, and the exporters.

``nbgrader_config.py`` puts them in nbgrader's configurable lists:

    sanitize:  (nbgrader) ClearOutput, ..., OverwriteCellsIfMissing, CheckCellMetadata
    autograde: ExecuteSandboxed -> JudgeChecks -> HideTestCode -> (nbgrader) IgnorePattern,
               LimitOutput -> SaveAutoGradesAtOnce -> (nbgrader) AssignLatePenalties ->
               SanitizeStudentHTML -> (nbgrader) CheckCellMetadata
    feedback:  GetGradesAwaiting (nbgrader's GetGrades) -> QuestionTitles -> (nbconvert)
               CSSHTMLHeaderPreprocessor -> (nbgrader) ClearHiddenTests, then
               FeedbackHTMLExporter with our template

OverwriteCellsIfMissing, SaveAutoGradesAtOnce, the exporters and ``speedups`` change only
what nbgrader's own steps cost; the grading processes apply ``speedups`` themselves.
"""
from autograder.nbgrader_ext.execute_sandboxed import ExecuteSandboxed, instructors_cells, run_sources, support_files
from autograder.nbgrader_ext.hide_test_code import HideTestCode
from autograder.nbgrader_ext.judge_checks import JudgeChecks
from autograder.nbgrader_ext.overwrite_cells_if_missing import OverwriteCellsIfMissing
from autograder.nbgrader_ext.sanitize import SanitizeStudentHTML
from autograder.nbgrader_ext.save_autogrades_at_once import SaveAutoGradesAtOnce

__all__ = ["ExecuteSandboxed", "HideTestCode", "JudgeChecks", "OverwriteCellsIfMissing", "SanitizeStudentHTML",
           "SaveAutoGradesAtOnce", "instructors_cells", "run_sources", "support_files"]
