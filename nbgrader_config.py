"""nbgrader configuration of this course; the repository root is the course directory."""
c = get_config()  # noqa: F821 (injected by traitlets)

c.CourseDirectory.root = "."
c.CourseDirectory.course_id = "parameter-management"
# Student copies must work on their own: the check helper ships with each assignment.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
# Re-add deleted grade cells when autograding, so one deleted test does not hide others.
c.OverwriteCells.add_missing_cells = True
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
