-- Curriculum order that cannot be corrupted: at most one section per position in a course and
-- one lecture per position in a section. Reorders run in one transaction and renumber in two
-- phases (through negative positions) so that no statement ever sees two rows on one position;
-- this index turns any interleaving that would still do so into an error instead of a
-- duplicate. Positions that earlier races left duplicated or gapped are renumbered 1..n first,
-- keeping their order (ties by id).
UPDATE sections s SET position = r.rn FROM (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY course_id ORDER BY position, id) AS rn FROM sections
) r WHERE r.id = s.id AND s.position <> r.rn;
UPDATE lectures l SET position = r.rn FROM (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY section_id ORDER BY position, id) AS rn FROM lectures
) r WHERE r.id = l.id AND l.position <> r.rn;
DROP INDEX sections_course;
DROP INDEX lectures_section;
CREATE UNIQUE INDEX sections_course_position ON sections(course_id, position);
CREATE UNIQUE INDEX lectures_section_position ON lectures(section_id, position);
